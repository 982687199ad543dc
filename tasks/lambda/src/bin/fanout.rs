//! `bitacora-lambda-fanout`: Kinesis event → normalise → dedup → routes, with partial batch
//! failures ([`bitacora_lambda::fanout`]).

use aws_lambda_events::event::kinesis::KinesisEvent;
use bitacora_lambda::{Needs, fanout, pipeline_of};

#[global_allocator]
static ALLOCATOR: bitacora_core::Allocator = bitacora_core::Allocator;

fn main() -> Result<(), lambda_runtime::Error> {
    bitacora_lambda::serve(
        "bitacora-lambda-fanout",
        Needs::Pipeline,
        |h, event: KinesisEvent| async move { fanout::handle(pipeline_of(&h), &h.lambda, &event).await },
    )
}
