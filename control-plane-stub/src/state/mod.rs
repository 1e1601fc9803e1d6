mod sqlite;
pub use sqlite::*;
