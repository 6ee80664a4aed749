//! A picture of each deploy: every answer the load generator got, when, and which version gave
//! it, with the moments the scenario acted (switch, SIGTERM, drain, exit) marked; drawn as SVG
//! (requests per 100 ms by version, non-2xx and socket errors in red and orange).

use std::{
    collections::BTreeMap,
    path::Path,
    sync::Mutex,
    time::{Duration, Instant},
};

use plotters::prelude::*;

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Status,
    Socket,
}

struct Sample {
    at: Duration,
    version: Option<String>,
    outcome: Outcome,
}

pub(crate) struct Timeline {
    start: Instant,
    samples: Vec<Sample>,
    marks: Vec<(Duration, String)>,
}

static CURRENT: Mutex<Option<Timeline>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Timeline) -> R) -> Option<R> {
    let mut current = CURRENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    current.as_mut().map(f)
}

/// Start recording a scenario run (dropping whatever the previous one left).
pub(crate) fn begin() {
    *CURRENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Timeline {
        start: Instant::now(),
        samples: Vec::new(),
        marks: Vec::new(),
    });
}

/// One answered (or failed) request.
pub(crate) fn record(version: Option<&str>, outcome: Outcome) {
    with(|timeline| {
        timeline.samples.push(Sample {
            at: timeline.start.elapsed(),
            version: version.map(str::to_owned),
            outcome,
        });
    });
}

/// A moment the scenario acted: "SIGTERM 1.0.0", "switch.sh", ...
pub(crate) fn mark(label: impl Into<String>) {
    let label = label.into();
    with(|timeline| timeline.marks.push((timeline.start.elapsed(), label)));
}

/// Stop recording; what was recorded.
pub(crate) fn finish() -> Option<Timeline> {
    CURRENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
}

const BUCKET: Duration = Duration::from_millis(100);
const PALETTE: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

impl Timeline {
    /// Draw the run as an SVG file at `path`.
    pub(crate) fn render(&self, path: &Path, title: &str) -> Result<(), String> {
        let end = self
            .samples
            .iter()
            .map(|s| s.at)
            .chain(self.marks.iter().map(|(at, _)| *at))
            .max()
            .unwrap_or_default();
        let buckets = usize::try_from(end.as_millis() / BUCKET.as_millis()).unwrap_or(0) + 1;
        let mut by_version: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let (mut statuses, mut sockets) = (vec![0_u32; buckets], vec![0_u32; buckets]);
        for sample in &self.samples {
            let bucket = usize::try_from(sample.at.as_millis() / BUCKET.as_millis()).unwrap_or(0);
            match sample.outcome {
                Outcome::Ok => {
                    let version = sample.version.as_deref().unwrap_or("unknown");
                    by_version.entry(version).or_insert_with(|| vec![0; buckets])[bucket] += 1;
                }
                Outcome::Status => statuses[bucket] += 1,
                Outcome::Socket => sockets[bucket] += 1,
            }
        }
        let peak = by_version
            .values()
            .flatten()
            .chain(&statuses)
            .chain(&sockets)
            .copied()
            .max()
            .unwrap_or(1)
            .max(1);
        #[allow(clippy::cast_precision_loss)]
        let x = |bucket: usize| bucket as f64 * BUCKET.as_secs_f64();
        let seconds = end.as_secs_f64().max(0.1);

        let root = SVGBackend::new(path, (960, 420)).into_drawing_area();
        let fail = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let top = f64::from(peak) * 1.3;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..seconds, 0.0..top)
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc("answers per 100 ms")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(|e| fail(&e))?;
        for (i, (version, counts)) in by_version.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    counts.iter().enumerate().map(|(b, n)| (x(b), f64::from(*n))),
                    color.stroke_width(2),
                ))
                .map_err(|e| fail(&e))?
                .label(format!("2xx from {version}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        }
        for (counts, color, label) in [
            (&statuses, RED, "non-2xx"),
            (&sockets, RGBColor(255, 127, 14), "socket errors"),
        ] {
            let total: u32 = counts.iter().sum();
            chart
                .draw_series(
                    counts
                        .iter()
                        .enumerate()
                        .filter(|(_, n)| **n > 0)
                        .map(|(b, n)| Rectangle::new([(x(b), 0.0), (x(b) + 0.08, f64::from(*n))], color.filled())),
                )
                .map_err(|e| fail(&e))?
                .label(format!("{label} ({total})"))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        }
        for (i, (at, label)) in self.marks.iter().enumerate() {
            let at = at.as_secs_f64();
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(at, 0.0), (at, top)],
                    BLACK.mix(0.45).stroke_width(1),
                )))
                .map_err(|e| fail(&e))?;
            #[allow(clippy::cast_precision_loss)]
            let height = top * (0.97 - 0.06 * (i % 4) as f64);
            chart
                .draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (at, height),
                    ("sans-serif", 12).into_font().color(&BLACK),
                )))
                .map_err(|e| fail(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))
    }
}
