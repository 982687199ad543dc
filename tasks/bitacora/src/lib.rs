//! The umbrella library: the whole batch pipeline for a range of days, shared by the `bitacora`
//! command (`bitacora run`) and the Python module (`bitacora.run`).

pub mod pipeline;
