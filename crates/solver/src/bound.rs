//! The lower bound on the cost of new capacity: the cheapest fractional cover of the pods' summed
//! requests (every resource, the pod count included) by instance types, per compatibility class of
//! pods (pods that can use the same set of types at the same prices), summed over classes.
//!
//! Key decision: the covering LP `min p.x  s.t.  A^T x >= d, x >= 0` has one row per resource, so
//! its dual `max d.y  s.t.  A y <= p, y >= 0` has only a handful of variables and the origin is
//! feasible; a dense tableau simplex with Bland's rule solves it exactly enough in microseconds.
//! Topology constraints and existing capacity are ignored, so the bound is valid (never above the
//! optimum) for inputs without existing nodes.

use crate::domain::SolveInput;
use crate::model::Resources;

/// The cheapest fractional cover of `demand` by `types` (allocatable, price per hour). `None` when
/// some demanded resource is offered by no type.
pub fn fractional_cover(demand: &Resources, types: &[(Resources, f64)]) -> Option<f64> {
    let names: Vec<&String> = demand
        .0
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, _)| k)
        .collect();
    if names.is_empty() {
        return Some(0.0);
    }
    // Scale each resource by its largest offer so the tableau is well conditioned.
    let mut scale = vec![0f64; names.len()];
    for (alloc, _) in types {
        for (j, n) in names.iter().enumerate() {
            scale[j] = scale[j].max(alloc.get(n) as f64);
        }
    }
    if scale.iter().any(|s| *s <= 0.0) {
        return None;
    }
    let r = names.len();
    let d: Vec<f64> = names
        .iter()
        .enumerate()
        .map(|(j, n)| demand.get(n) as f64 / scale[j])
        .collect();
    let rows: Vec<(Vec<f64>, f64)> = types
        .iter()
        .filter(|(_, p)| p.is_finite())
        .map(|(a, p)| {
            (
                names
                    .iter()
                    .enumerate()
                    .map(|(j, n)| a.get(n) as f64 / scale[j])
                    .collect(),
                *p,
            )
        })
        .collect();
    Some(maximize(&d, &rows, r))
}

/// `max c.y s.t. a_i . y <= b_i (b_i >= 0), y >= 0` by the tableau simplex (Bland's rule).
fn maximize(c: &[f64], rows: &[(Vec<f64>, f64)], n: usize) -> f64 {
    let m = rows.len();
    let width = n + m + 1;
    let mut t = vec![0f64; (m + 1) * width];
    for (i, (a, b)) in rows.iter().enumerate() {
        t[i * width..i * width + n].copy_from_slice(a);
        t[i * width + n + i] = 1.0;
        t[i * width + width - 1] = *b;
    }
    // Objective row holds -c (we pivot while some entry is negative).
    for j in 0..n {
        t[m * width + j] = -c[j];
    }
    let mut basis: Vec<usize> = (n..n + m).collect();
    const EPS: f64 = 1e-12;
    for _ in 0..10_000 {
        let Some(col) = (0..width - 1).find(|j| t[m * width + j] < -EPS) else {
            break;
        };
        let mut pivot: Option<(usize, f64)> = None;
        for i in 0..m {
            let a = t[i * width + col];
            if a > EPS {
                let ratio = t[i * width + width - 1] / a;
                let better = match pivot {
                    None => true,
                    Some((pi, pr)) => {
                        ratio < pr - EPS || (ratio <= pr + EPS && basis[i] < basis[pi])
                    }
                };
                if better {
                    pivot = Some((i, ratio));
                }
            }
        }
        let Some((pr, _)) = pivot else {
            return f64::INFINITY;
        };
        let pv = t[pr * width + col];
        for j in 0..width {
            t[pr * width + j] /= pv;
        }
        for i in 0..=m {
            if i == pr {
                continue;
            }
            let f = t[i * width + col];
            if f.abs() > 0.0 {
                for j in 0..width {
                    t[i * width + j] -= f * t[pr * width + j];
                }
            }
        }
        basis[pr] = col;
    }
    t[m * width + width - 1]
}

/// The lower bound on what new capacity for `input.pods` costs per hour (see the module docs).
/// Pods no instance type can hold add nothing.
pub fn lower_bound(input: &SolveInput) -> f64 {
    crate::solve::lower_bound_input(input)
        .iter()
        .filter_map(|g| fractional_cover(&g.demand, &g.types))
        .filter(|v| v.is_finite())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cpu: i64, mem: i64) -> Resources {
        Resources::new().with("cpu", cpu).with("memory", mem)
    }

    #[test]
    fn covers_with_the_cheapest_mix() {
        // A cpu-heavy and a memory-heavy type; demand needs both dimensions.
        let types = vec![(r(4000, 4), 1.0), (r(1000, 8), 1.0)];
        // 4000m + 8 memory: best mix is x1 = 6/7? Solve: 4a + b >= 4, 4a + 8b >= 8.
        let v = fractional_cover(&r(4000, 8), &types).unwrap();
        // a = 6/7, b = 4/7 -> cost 10/7.
        assert!((v - 10.0 / 7.0).abs() < 1e-9, "{v}");
        // One dimension only: the cheapest per unit wins.
        let v = fractional_cover(&r(8000, 0), &types).unwrap();
        assert!((v - 2.0).abs() < 1e-9, "{v}");
        assert_eq!(fractional_cover(&Resources::new(), &types), Some(0.0));
        assert_eq!(
            fractional_cover(&Resources::new().with("nvidia.com/gpu", 1), &types),
            None
        );
    }
}
