//! The analysis tables of one set, from the typed `Analysis`.

use super::table::{Cell, Table};
use crate::manifold::Analysis;

pub(super) fn analysis_tables(a: &Analysis) -> String {
    let mut out = String::new();
    let mut t = Table::new(
        format!("Arbitration at layer {} (best composite first)", a.choice.layer),
        &["shape", "train CV score", "± std", "held-out score", "seam closure", "periodicity", "coverage", "composite"],
    );
    for r in &a.arbitration {
        t.row(
            r.shape == a.winner,
            vec![
                Cell::Text(r.shape.to_string()),
                Cell::Num(r.train_cv_score),
                Cell::Num(r.train_cv_std),
                Cell::Num(r.test_score),
                Cell::Num(r.test_closure_ratio),
                Cell::Num(r.periodicity_score),
                Cell::Num(r.coverage_ratio),
                Cell::Num(r.composite_score),
            ],
        );
    }
    out.push_str(&t.render());
    let mut t = Table::new(
        "Discovery (cross-validated on the training split)",
        &["shape", "rank", "folds", "mean score", "std", "shuffled-label mean", "permutation p"],
    );
    for r in &a.discovery {
        t.row(
            r.rank == 1,
            vec![
                Cell::Text(r.shape.to_string()),
                Cell::Num(r.rank as f64),
                Cell::Num(r.n_folds as f64),
                Cell::Num(r.mean.primary()),
                Cell::Num(r.std.primary()),
                Cell::Num(r.shuffled_baseline),
                Cell::Num(r.p_value),
            ],
        );
    }
    out.push_str(&t.render());
    let mut t = Table::new("Held-out test", &["shape", "score", "CI low", "CI high", "seam closure", "periodicity"]);
    for r in &a.heldout {
        t.row(
            r.shape == a.winner,
            vec![
                Cell::Text(r.shape.to_string()),
                Cell::Num(r.test.primary()),
                Cell::Num(r.test_ci.0),
                Cell::Num(r.test_ci.1),
                Cell::Num(r.test_closure_ratio),
                Cell::Num(r.periodicity_score),
            ],
        );
    }
    out.push_str(&t.render());
    let mut t = Table::new("Layer scan", &["layer", "in-sample score", "CV score", "± std", "shuffled", "p", "note"]);
    for r in &a.layer_scan {
        t.row(
            r.layer == a.choice.layer,
            vec![
                Cell::Num(r.layer as f64),
                Cell::Num(r.in_sample_score),
                Cell::Num(r.cv_score),
                Cell::Num(r.cv_std),
                Cell::Num(r.shuffled_baseline),
                Cell::Num(r.p_value),
                Cell::Text(r.note.clone()),
            ],
        );
    }
    out.push_str(&t.render());
    out
}
