pub mod service;
pub mod sessions;
pub mod wire;
