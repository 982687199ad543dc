//! `bitacora-lambda-transform`: a Kinesis Data Firehose data-transformation function
//! ([`bitacora_lambda::transform`]).

use aws_lambda_events::event::firehose::KinesisFirehoseEvent;
use bitacora_lambda::{Needs, transform};

#[global_allocator]
static ALLOCATOR: bitacora_core::Allocator = bitacora_core::Allocator;

fn main() -> Result<(), lambda_runtime::Error> {
    bitacora_lambda::serve(
        "bitacora-lambda-transform",
        Needs::Normalizer,
        |h, event: KinesisFirehoseEvent| async move {
            transform::handle(&h.normalizer, &h.lambda, &event)
        },
    )
}
