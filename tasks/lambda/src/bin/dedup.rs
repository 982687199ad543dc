//! `bitacora-lambda-dedup`: SQS event → dedup → normalise → routes, with partial batch failures
//! ([`bitacora_lambda::dedup`]).

use aws_lambda_events::event::sqs::SqsEvent;
use bitacora_lambda::{Needs, dedup, pipeline_of};

#[global_allocator]
static ALLOCATOR: bitacora_core::Allocator = bitacora_core::Allocator;

fn main() -> Result<(), lambda_runtime::Error> {
    bitacora_lambda::serve(
        "bitacora-lambda-dedup",
        Needs::Pipeline,
        |h, event: SqsEvent| async move { dedup::handle(pipeline_of(&h), &h.lambda, &event).await },
    )
}
