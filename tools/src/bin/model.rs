//! `model`: lists the networks the trainer builds and prints a network's layers, parameters and
//! multiply-adds.
//!
//! ```text
//! model list
//! model summary resnet50 [--input 3x224x224] [--classes 1000] [--json]
//! ```
//!
//! `summary` builds the network on the CPU and runs an eval-mode forward pass of one zero image
//! of the `--input` size. Multiply-adds count convolutions and fully connected layers only.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use expanse_tools::{print_stdout, UsageError};
use expanse_trainer::model::{model_names_help, summarize};

#[derive(Parser, Debug)]
#[command(version, about = "List the trainer's networks or print a network's layer summary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the model names that `train --model` accepts.
    List,
    /// Print each layer's output shape, parameters and multiply-adds, with totals.
    Summary {
        /// Model name, as for `train --model` (see `model list`).
        name: String,

        /// Input size as CHANNELSxHEIGHTxWIDTH.
        #[arg(long, default_value = "3x224x224", value_name = "CxHxW")]
        input: String,

        /// Number of classes of the final layer.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        classes: u64,

        /// Print the summary as one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    expanse_tools::init_logging();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => expanse_tools::report_with(&error, &|cause| {
            matches!(
                cause.downcast_ref::<expanse_trainer::Error>(),
                Some(expanse_trainer::Error::Config(_))
            )
        }),
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::List => print_stdout(&format!("{}\n", model_names_help())),
        Command::Summary { name, input, classes, json } => {
            let [channels, height, width] = parse_input(input)?;
            // A too-small input makes libtorch panic inside tch; `summarize` catches it and
            // returns a configuration error, so silence the default panic report meanwhile.
            let default_hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let summary = summarize(name, channels, *classes as usize, height, width);
            std::panic::set_hook(default_hook);
            // The error names the model already.
            let summary = summary?;

            let text = if *json {
                format!("{}\n", serde_json::to_string_pretty(&summary)?)
            } else {
                summary.to_string()
            };
            print_stdout(&text)
        }
    }
}

/// Parses `--input` as `CxHxW` with every size between 1 and 16384.
fn parse_input(text: &str) -> anyhow::Result<[usize; 3]> {
    let invalid = |why: &str| {
        UsageError(format!(
            "--input {text:?} is invalid: {why}; expected CHANNELSxHEIGHTxWIDTH such as 3x224x224"
        ))
    };
    let parts: Vec<&str> = text.split('x').collect();
    let [c, h, w] = parts[..] else {
        return Err(invalid("it does not have three sizes").into());
    };
    let mut sizes = [0usize; 3];
    for (size, part) in sizes.iter_mut().zip([c, h, w]) {
        *size = part.parse().map_err(|_| invalid(&format!("{part:?} is not a whole number")))?;
        if !(1..=16_384).contains(size) {
            return Err(invalid(&format!("size {size} is not between 1 and 16384")).into());
        }
    }
    Ok(sizes)
}
