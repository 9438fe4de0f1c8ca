//! Integration tests of the `palette` binary: each module drives one verb
//! the way a user would, through the command line.

mod bad_input;
mod code;
mod compare;
mod compose;
mod edit;
mod hostile;
mod hostile_peers;
mod huge_trees;
mod inspect;
mod limits;
mod load;
mod model;
mod overlap;
mod overload;
mod replicate;
mod run;
mod scale;
mod serve;
mod signals;
mod special_inputs;
mod system;
mod util;
mod whatif;
