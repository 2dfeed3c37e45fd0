//! One module per subcommand; each owns its `Args` and an async `run`.

pub mod catalog;
pub mod crds;
pub mod migrate;
pub mod plan;
pub mod reference;
pub mod run;
pub mod scenario;
pub mod sim;
pub mod simulate;

/// Marks an error as the user's input being wrong (a file, a document, a field, a flag): the
/// binary exits 2 for it, as for a usage error, and 1 for everything else.
#[derive(Debug)]
pub struct BadInput;

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid input")
    }
}

/// Wraps `err` as [`BadInput`].
pub fn bad_input(err: anyhow::Error) -> anyhow::Error {
    err.context(BadInput)
}

/// The exit code for a failed command: 2 for [`BadInput`], 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<BadInput>().is_some() {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_exits_2_and_other_failures_1() {
        let bad = bad_input(anyhow::anyhow!("pods.yaml document 1: spec.weight"));
        assert_eq!(exit_code(&bad), 2);
        assert_eq!(
            format!("{bad:#}"),
            "invalid input: pods.yaml document 1: spec.weight"
        );
        assert_eq!(exit_code(&anyhow::anyhow!("the API server stopped")), 1);
    }
}
