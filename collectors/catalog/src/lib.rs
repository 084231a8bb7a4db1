//! The GPU catalog (work in progress in the next commit).
