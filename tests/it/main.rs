//! huescan's integration tests, in one test binary: every binary links candle, tokenizers and the rest, so
//! thirteen of them cost thirteen links and several GB of disk for no gain. Each module is one area; the CLI
//! tests run the real `huescan` binary (`CARGO_BIN_EXE_huescan`) on the fixtures in `tests/fixtures/`.

mod common;

mod cli_conventions;
mod cli_pipeline;
mod cli_store;
mod exports;
mod extract;
mod fuzz;
mod hook_points;
mod kill_resume;
mod manifold_analyze;
mod manifold_parity;
mod module_graph;
mod qwen2_vl_parity;
mod qwen_colour;
mod qwen_errors;
mod qwen_parity;
mod qwen_tokenizer;
mod reliability;
mod report;
mod settings;
mod steer;
mod steer_cli;
mod steer_layers;
mod stimuli;
mod store;
