//! Jonker–Volgenant shortest-augmenting-path solver for dense square
//! assignment problems.
//!
//! Written here rather than taken from a crate because weight matching solves
//! many closely related problems in a row: the solver keeps its column prices
//! (dual variables) between calls, and a warm start from them skips most of
//! the work when the cost matrix changed little. `docs/benchmarks.md` has the
//! measured win against the scipy port (`lsap`).
//!
//! The algorithm follows Jonker & Volgenant (1987): column reduction,
//! reduction transfer, two rounds of augmenting row reduction, then Dijkstra
//! augmentation for the rows still free. All arithmetic is in `f64`.

/// Whether the solver minimises or maximises the total of the chosen entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sense {
    /// Smallest total cost.
    Minimize,
    /// Largest total score (weight matching maximises similarity).
    Maximize,
}

/// Errors from [`LapSolver::solve`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LapError {
    /// The slice length is not `n * n`.
    #[error("cost matrix has {len} entries, expected {n}x{n} = {}", n * n)]
    NotSquare {
        /// Declared side.
        n: usize,
        /// Actual number of entries.
        len: usize,
    },
    /// A NaN or infinite entry: no assignment is well defined.
    #[error("cost matrix entry ({row}, {col}) is {value}, not a finite number")]
    NonFinite {
        /// Row of the bad entry.
        row: usize,
        /// Column of the bad entry.
        col: usize,
        /// The value found.
        value: f64,
    },
}

/// An optimal assignment: `row_to_col[i]` is the column given to row `i`.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// Column assigned to each row; a permutation of `0..n`.
    pub row_to_col: Vec<usize>,
    /// Sum of the chosen entries of the matrix as given (not negated).
    pub total: f64,
}

/// A reusable solver. It owns its scratch buffers and the column prices of
/// its last solve, so that a sequence of similar problems (the sweeps of
/// weight matching) can be warm-started.
#[derive(Clone, Debug, Default)]
pub struct LapSolver {
    cost: Vec<f64>,
    prices: Vec<f64>,
    row_sol: Vec<usize>,
    col_sol: Vec<usize>,
    free: Vec<usize>,
    dist: Vec<f64>,
    pred: Vec<usize>,
    col_list: Vec<usize>,
    matches: Vec<u32>,
}

/// Marks an unassigned row or column.
const NONE: usize = usize::MAX;

/// Bound on augmenting-row-reduction steps per free row and round. Each step
/// lowers a price by a positive amount, so the phase ends, but with floating
/// point near-ties it can crawl; past this bound the remaining rows are left
/// to the augmentation phase, which is exact regardless.
const ARR_STEPS_PER_ROW: usize = 8;

impl LapSolver {
    /// A solver with no history: the first solve is a cold start.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the prices of the last solve, so the next solve starts cold.
    pub fn reset(&mut self) {
        self.prices.clear();
    }

    /// Whether the next solve of size `n` will be warm-started.
    pub fn is_warm(&self, n: usize) -> bool {
        n > 0 && self.prices.len() == n
    }

    /// Solves the `n x n` problem in row-major `matrix`, optimising `sense`.
    ///
    /// If the previous solve had the same size, its prices seed this one
    /// (warm start); the answer is exact either way.
    pub fn solve<T: Copy + Into<f64>>(
        &mut self,
        matrix: &[T],
        n: usize,
        sense: Sense,
    ) -> Result<Assignment, LapError> {
        if matrix.len() != n * n {
            return Err(LapError::NotSquare {
                n,
                len: matrix.len(),
            });
        }
        self.load_costs(matrix, n, sense)?;
        if n == 0 {
            return Ok(Assignment {
                row_to_col: Vec::new(),
                total: 0.0,
            });
        }
        let warm = self.is_warm(n);
        self.row_sol.clear();
        self.row_sol.resize(n, NONE);
        self.col_sol.clear();
        self.col_sol.resize(n, NONE);
        self.free.clear();
        if warm {
            // Prices from the last solve are kept; every row starts free and
            // the augmenting row reduction re-assigns them at those prices.
            self.free.extend(0..n);
        } else {
            self.prices.clear();
            self.prices.resize(n, 0.0);
            self.column_reduction(n);
            self.reduction_transfer(n);
        }
        for _ in 0..2 {
            if self.free.is_empty() {
                break;
            }
            self.augmenting_row_reduction(n);
        }
        let free = std::mem::take(&mut self.free);
        for &row in &free {
            self.augment(n, row);
        }
        self.free = free;

        let total = self
            .row_sol
            .iter()
            .enumerate()
            .map(|(i, &j)| matrix[i * n + j].into())
            .sum();
        Ok(Assignment {
            row_to_col: self.row_sol.clone(),
            total,
        })
    }

    /// Whether `assignment` (row to column) is still optimal for `matrix`,
    /// proved with the prices of the last solve of the same size: it is
    /// when every row's assigned column minimises the row's reduced cost
    /// (cost minus price), since those prices and the row minima are then
    /// a feasible dual with zero slack on the assignment. `false` means
    /// "not proved" (the prices are stale, or there are none), not "not
    /// optimal".
    ///
    /// Weight matching re-solves a permutation after a neighbour moved a
    /// few units; the previous prices usually still certify the answer,
    /// and this check reads the matrix once instead of solving.
    pub fn certifies<T: Copy + Into<f64>>(
        &self,
        matrix: &[T],
        n: usize,
        sense: Sense,
        assignment: &[usize],
    ) -> bool {
        if !self.is_warm(n) || matrix.len() != n * n || !is_permutation(assignment, n) {
            return false;
        }
        let sign = match sense {
            Sense::Minimize => 1.0,
            Sense::Maximize => -1.0,
        };
        matrix.chunks_exact(n).zip(assignment).all(|(row, &own)| {
            let Some(&assigned) = row.get(own) else {
                return false;
            };
            let reduced = sign * assigned.into() - self.prices[own];
            if !reduced.is_finite() {
                return false;
            }
            row.iter()
                .zip(&self.prices)
                .all(|(&c, &v)| sign * c.into() - v >= reduced)
        })
    }

    /// Copies the matrix into internal `f64` storage as costs to minimise.
    fn load_costs<T: Copy + Into<f64>>(
        &mut self,
        matrix: &[T],
        n: usize,
        sense: Sense,
    ) -> Result<(), LapError> {
        let sign = match sense {
            Sense::Minimize => 1.0,
            Sense::Maximize => -1.0,
        };
        self.cost.clear();
        self.cost.reserve(matrix.len());
        for (k, &x) in matrix.iter().enumerate() {
            let value: f64 = x.into();
            if !value.is_finite() {
                return Err(LapError::NonFinite {
                    row: k / n,
                    col: k % n,
                    value,
                });
            }
            self.cost.push(sign * value);
        }
        Ok(())
    }

    /// Phase 1: price each column at its smallest cost and give it to that
    /// row if the row is still unassigned (scanning columns in reverse, as JV
    /// recommend).
    fn column_reduction(&mut self, n: usize) {
        self.matches.clear();
        self.matches.resize(n, 0);
        for j in (0..n).rev() {
            let mut min = self.cost[j];
            let mut imin = 0;
            for i in 1..n {
                let c = self.cost[i * n + j];
                if c < min {
                    min = c;
                    imin = i;
                }
            }
            self.prices[j] = min;
            self.matches[imin] += 1;
            if self.matches[imin] == 1 {
                self.row_sol[imin] = j;
                self.col_sol[j] = imin;
            } else if self.prices[j] < self.prices[self.row_sol[imin]] {
                let j1 = self.row_sol[imin];
                self.row_sol[imin] = j;
                self.col_sol[j] = imin;
                self.col_sol[j1] = NONE;
            } else {
                self.col_sol[j] = NONE;
            }
        }
    }

    /// Phase 2: rows that won exactly one column pass their slack to it;
    /// rows that won none become free.
    fn reduction_transfer(&mut self, n: usize) {
        for i in 0..n {
            match self.matches[i] {
                0 => self.free.push(i),
                1 => {
                    let j1 = self.row_sol[i];
                    let row = &self.cost[i * n..(i + 1) * n];
                    let mut min = f64::INFINITY;
                    for (j, (&c, &v)) in row.iter().zip(&self.prices).enumerate() {
                        if j != j1 && c - v < min {
                            min = c - v;
                        }
                    }
                    if min.is_finite() {
                        self.prices[j1] -= min;
                    }
                }
                _ => {}
            }
        }
    }

    /// Phase 3: an auction-like pass. Each free row takes its cheapest column
    /// at the price of its second cheapest, evicting the previous owner.
    fn augmenting_row_reduction(&mut self, n: usize) {
        let mut pending = std::mem::take(&mut self.free);
        let mut next_free = Vec::with_capacity(pending.len());
        let mut budget = ARR_STEPS_PER_ROW * pending.len() + n;
        // `pending` is used as a stack so an evicted row is retried at once.
        pending.reverse();
        while let Some(i) = pending.pop() {
            let row = &self.cost[i * n..(i + 1) * n];
            let (j_min, umin, j_sub, usubmin) = two_smallest(row, &self.prices);
            let mut j1 = j_min;
            let mut i0 = self.col_sol[j1];
            let strict = umin < usubmin;
            if strict {
                // With one column there is no second price to move to.
                if usubmin.is_finite() {
                    self.prices[j1] -= usubmin - umin;
                }
            } else if i0 != NONE {
                // A tie: take the other cheapest column, which may be free.
                j1 = j_sub;
                i0 = self.col_sol[j1];
            }
            self.row_sol[i] = j1;
            self.col_sol[j1] = i;
            if i0 != NONE {
                self.row_sol[i0] = NONE;
                if strict && budget > 0 {
                    budget -= 1;
                    pending.push(i0);
                } else {
                    next_free.push(i0);
                }
            }
        }
        self.free = next_free;
    }

    /// Phase 4: Dijkstra from a free row to the nearest free column over
    /// reduced costs, then flip the alternating path and update prices.
    fn augment(&mut self, n: usize, free_row: usize) {
        let cost = &self.cost;
        let prices = &mut self.prices;
        let dist = &mut self.dist;
        let pred = &mut self.pred;
        let col_list = &mut self.col_list;
        dist.clear();
        pred.clear();
        col_list.clear();
        let row = &cost[free_row * n..(free_row + 1) * n];
        dist.extend(row.iter().zip(prices.iter()).map(|(&c, &v)| c - v));
        pred.resize(n, free_row);
        col_list.extend(0..n);

        // col_list[..low]: scanned; [low..up]: at current minimum, to scan;
        // [up..]: not yet reached.
        let mut low = 0;
        let mut up = 0;
        let mut last = 0;
        let mut min = 0.0;
        let end_of_path = 'search: loop {
            if up == low {
                last = low;
                min = dist[col_list[up]];
                up += 1;
                // The scan covers the columns past `up` as it was on entry;
                // `up` itself moves as columns join the minimum set.
                let start = up;
                for k in start..n {
                    let j = col_list[k];
                    let h = dist[j];
                    if h <= min {
                        if h < min {
                            up = low;
                            min = h;
                        }
                        col_list[k] = col_list[up];
                        col_list[up] = j;
                        up += 1;
                    }
                }
                for &j in &col_list[low..up] {
                    if self.col_sol[j] == NONE {
                        break 'search j;
                    }
                }
            }
            let j1 = col_list[low];
            low += 1;
            let i = self.col_sol[j1];
            let row = &cost[i * n..(i + 1) * n];
            let h = row[j1] - prices[j1] - min;
            let mut k = up;
            while k < n {
                let j = col_list[k];
                let v2 = row[j] - prices[j] - h;
                if v2 < dist[j] {
                    pred[j] = i;
                    if v2 == min {
                        if self.col_sol[j] == NONE {
                            break 'search j;
                        }
                        col_list[k] = col_list[up];
                        col_list[up] = j;
                        up += 1;
                    }
                    dist[j] = v2;
                }
                k += 1;
            }
        };
        // Columns scanned before the last minimum change get their prices
        // raised so reduced costs stay non-negative.
        for &j in &col_list[..last] {
            prices[j] += dist[j] - min;
        }
        let mut j = end_of_path;
        loop {
            let i = pred[j];
            self.col_sol[j] = i;
            let previous = self.row_sol[i];
            self.row_sol[i] = j;
            if i == free_row {
                break;
            }
            j = previous;
        }
    }
}

/// Whether `assignment` gives each of `n` rows a distinct column below `n`.
fn is_permutation(assignment: &[usize], n: usize) -> bool {
    let mut taken = vec![false; n];
    assignment.len() == n
        && assignment
            .iter()
            .all(|&j| j < n && !std::mem::replace(&mut taken[j], true))
}

/// Smallest and second-smallest reduced cost `row[j] - prices[j]`, with their
/// columns. The second column is `NONE` when `n == 1`.
fn two_smallest(row: &[f64], prices: &[f64]) -> (usize, f64, usize, f64) {
    let mut umin = row[0] - prices[0];
    let mut j1 = 0;
    let mut usubmin = f64::INFINITY;
    let mut j2 = NONE;
    for (j, (&c, &v)) in row.iter().zip(prices).enumerate().skip(1) {
        let h = c - v;
        if h < usubmin {
            if h >= umin {
                usubmin = h;
                j2 = j;
            } else {
                usubmin = umin;
                j2 = j1;
                umin = h;
                j1 = j;
            }
        }
    }
    (j1, umin, j2, usubmin)
}
