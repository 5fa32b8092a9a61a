//! One module per CNI verb; [`crate::plugin`] dispatches to them.

pub mod add;
pub mod add_result;
pub mod check;
pub mod del;
pub mod gc;
pub mod rollback;
pub mod status;
pub mod version;
