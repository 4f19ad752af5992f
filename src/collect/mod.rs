//! Collectors turn part of the machine into snapshot entries. They know
//! nothing of storage: they yield paths and metadata in manifest order.

pub mod command;
pub mod dir;
pub mod env;
pub mod facts;
pub mod secrets;
pub mod tree;
