//! Drives a real agent over its Unix socket, in-process, with a minimal hyper client.

mod exec;
mod files;
mod processes;
mod support;
mod terminal;
mod upload;
mod watch;
