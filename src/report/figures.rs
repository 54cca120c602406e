//! Figures with plotters, each drawn once per backend so every figure exists as SVG (for the page, sharp at
//! any zoom) and PNG (for slides and papers). The font is embedded (DejaVu Sans), so rendering needs no
//! system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::colour::{hsv_to_rgb, Hsv};

const FONT: &str = "sans-serif";
/// Text sizes in figure pixels (plotters draws them at ~0.8 of this). The page's grid shows a 640 px figure no
/// narrower than 520 px, so axis text stays at >= 13 px on screen and in print.
const LABEL_PX: u32 = 20;
const TITLE_PX: u32 = 24;
static FONT_ONCE: Once = Once::new();

fn register_font() {
    FONT_ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font is valid"));
    });
}

/// A figure that can draw itself on any plotters backend.
pub trait Figure {
    fn size(&self) -> (u32, u32) {
        (640, 400)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// Renders `fig` to `<dir>/<stem>.svg` and `<dir>/<stem>.png`; returns the two file names.
pub fn render(fig: &impl Figure, dir: &Path, stem: &str) -> crate::report::Result<[String; 2]> {
    register_font();
    crate::fsx::create_dir_all(dir)?;
    let (svg, png) = (format!("{stem}.svg"), format!("{stem}.png"));
    let size = fig.size();
    let err = |msg: String| crate::report::Error::Figure { stem: stem.to_string(), msg };
    {
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
            fig.draw(&root).map_err(err)?;
            root.present().map_err(|e| err(e.to_string()))?;
        }
        crate::fsx::write_atomic(&dir.join(&svg), text.as_bytes())?;
    }
    {
        let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
            fig.draw(&root).map_err(err)?;
            root.present().map_err(|e| err(e.to_string()))?;
        }
        let img = image::RgbImage::from_raw(size.0, size.1, buf).expect("buffer sized to the figure");
        let mut bytes = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).map_err(|e| err(e.to_string()))?;
        crate::fsx::write_atomic(&dir.join(&png), &bytes)?;
    }
    Ok([svg, png])
}

/// The colour of a hue at full saturation and value.
pub fn hue_colour(hue_deg: f64) -> RGBColor {
    let [r, g, b] = hsv_to_rgb(Hsv { hue_deg: hue_deg.rem_euclid(360.0), s: 1.0, v: 1.0 });
    RGBColor((r * 255.0).round() as u8, (g * 255.0).round() as u8, (b * 255.0).round() as u8)
}

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

fn finite_range(values: impl Iterator<Item = f64>, pad: f64) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).max(1e-9);
    (lo - pad * span, hi + pad * span)
}

/// A named, coloured line: `(name, colour, points)`.
pub type Line = (String, RGBColor, Vec<(f64, f64)>);

/// Lines over layers, one per series, with the chosen layer marked.
pub struct LayerLines {
    pub title: String,
    pub y_label: String,
    pub layers: Vec<usize>,
    /// (name, colour, values per layer; NaN = missing).
    pub series: Vec<(String, RGBColor, Vec<f64>)>,
    pub chosen: Option<usize>,
    /// The hook name of each layer, when known. With vision-tower points among them, the x axis is the forward
    /// order (vision tower, then language model, the boundary marked) instead of the layer index.
    pub hooks: Vec<String>,
}

impl LayerLines {
    /// x position of each layer, and where the vision tower ends (between two x positions), if it is shown.
    fn x_positions(&self) -> (Vec<f64>, Option<f64>) {
        let points: Option<Vec<crate::model::HookPoint>> = (self.hooks.len() == self.layers.len())
            .then(|| self.hooks.iter().map(|h| h.parse().ok()).collect())
            .flatten();
        let vision = |p: &crate::model::HookPoint| p.component() == crate::model::Component::Vision;
        let Some(points) = points.filter(|ps| ps.iter().any(vision)) else {
            return (self.layers.iter().map(|&l| l as f64).collect(), None);
        };
        let mut order: Vec<usize> = (0..points.len()).collect();
        order.sort_by_key(|&k| (points[k].forward_order(), self.layers[k]));
        let mut x = vec![0.0; points.len()];
        for (rank, &k) in order.iter().enumerate() {
            x[k] = rank as f64;
        }
        let n_vision = points.iter().filter(|p| vision(p)).count();
        (x, (n_vision < points.len()).then_some(n_vision as f64 - 0.5))
    }
}

impl Figure for LayerLines {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (xs, boundary) = self.x_positions();
        let x_of = |l: usize| self.layers.iter().position(|&m| m == l).map_or(l as f64, |k| xs[k]);
        let x_max = xs.iter().copied().fold(1.0, f64::max);
        let (y0, y1) = finite_range(self.series.iter().flat_map(|s| s.2.iter().copied()), 0.08);
        let mut chart = chart_2d(root, &self.title, -0.5..x_max + 0.5, y0..y1)?;
        let x_desc = if boundary.is_some() {
            "stored point in forward order, labelled by layer index (vision tower | language model)"
        } else {
            "layer (HF hidden_states index)"
        };
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(&self.y_label)
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() >= 1e-9 {
                    return String::new();
                }
                // In forward order a tick is a rank; it is labelled with the layer index stored there.
                match boundary {
                    Some(_) => {
                        xs.iter().position(|&p| p == x.round()).map_or(String::new(), |k| self.layers[k].to_string())
                    }
                    None => format!("{}", x.round() as i64),
                }
            })
            .light_line_style(WHITE.mix(0.0))
            .label_style((FONT, LABEL_PX))
            .draw()
            .map_err(e)?;
        let series: Vec<Line> = self
            .series
            .iter()
            .map(|(name, colour, values)| {
                let mut pts: Vec<(f64, f64)> = xs.iter().zip(values).map(|(&x, &v)| (x, v)).collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                (name.clone(), *colour, pts)
            })
            .collect();
        draw_lines(&mut chart, &series)?;
        if let Some(b) = boundary {
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(b, y0), (b, y1)], BLACK.mix(0.5).stroke_width(1))))
                .map_err(e)?
                .label("vision tower | language model")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.mix(0.5).stroke_width(1)));
        }
        if let Some(l) = self.chosen {
            let x = x_of(l);
            chart
                .draw_series(std::iter::once(PathElement::new(vec![(x, y0), (x, y1)], RED.mix(0.6).stroke_width(2))))
                .map_err(e)?
                .label(match self.layers.iter().position(|&m| m == l).and_then(|k| self.hooks.get(k)) {
                    Some(hook) => format!("chosen layer {l} ({hook})"),
                    None => format!("chosen layer {l}"),
                })
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.mix(0.6).stroke_width(2)));
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// Points coloured by hue in two dimensions.
pub struct HueScatter {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// (x, y, hue_deg).
    pub points: Vec<(f64, f64, f64)>,
    pub square: bool,
}

impl Figure for HueScatter {
    fn size(&self) -> (u32, u32) {
        if self.square {
            (560, 560)
        } else {
            (640, 400)
        }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (mut x0, mut x1) = finite_range(self.points.iter().map(|p| p.0), 0.08);
        let (mut y0, mut y1) = finite_range(self.points.iter().map(|p| p.1), 0.08);
        if self.square {
            let (cx, cy, r) = ((x0 + x1) / 2.0, (y0 + y1) / 2.0, ((x1 - x0).max(y1 - y0)) / 2.0);
            (x0, x1, y0, y1) = (cx - r, cx + r, cy - r, cy + r);
        }
        let mut chart = chart_2d(root, &self.title, x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .label_style((FONT, LABEL_PX))
            .draw()
            .map_err(e)?;
        chart
            .draw_series(self.points.iter().map(|&(x, y, h)| Circle::new((x, y), 5, hue_colour(h).filled())))
            .map_err(e)?;
        Ok(())
    }
}

/// Points coloured by hue in three dimensions (a fixed oblique view).
pub struct HueScatter3d {
    pub title: String,
    pub points: Vec<([f64; 3], f64)>,
}

impl Figure for HueScatter3d {
    fn size(&self) -> (u32, u32) {
        (640, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let r = |k: usize| finite_range(self.points.iter().map(|p| p.0[k]), 0.05);
        let ((x0, x1), (y0, y1), (z0, z1)) = (r(0), r(1), r(2));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, TITLE_PX))
            .margin(16)
            .build_cartesian_3d(x0..x1, z0..z1, y0..y1)
            .map_err(e)?;
        chart.with_projection(|mut p| {
            p.pitch = 0.45;
            p.yaw = 0.66;
            p.scale = 0.85;
            p.into_matrix()
        });
        chart.configure_axes().label_style((FONT, 14)).draw().map_err(e)?;
        chart
            .draw_series(self.points.iter().map(|&(c, h)| Circle::new((c[0], c[2], c[1]), 4, hue_colour(h).filled())))
            .map_err(e)?;
        Ok(())
    }
}

/// Curves over alpha (e.g. decoded hue against steering strength), one per named series.
pub struct AlphaCurves {
    pub title: String,
    pub y_label: String,
    /// (name, colour, points (alpha, value)).
    pub series: Vec<Line>,
    pub y_range: Option<(f64, f64)>,
    /// A horizontal target line and the tolerance band around it: `(value, half-width)`.
    pub target: Option<(f64, f64)>,
}

impl Figure for AlphaCurves {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (x0, x1) = finite_range(self.series.iter().flat_map(|s| s.2.iter().map(|p| p.0)), 0.04);
        let values = self.series.iter().flat_map(|s| s.2.iter().map(|p| p.1));
        let targets = self.target.iter().flat_map(|&(t, tol)| [t - tol, t + tol]);
        let (y0, y1) = self.y_range.unwrap_or_else(|| finite_range(values.chain(targets), 0.08));
        let mut chart = chart_2d(root, &self.title, x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("steering alpha")
            .y_desc(&self.y_label)
            .label_style((FONT, LABEL_PX))
            .draw()
            .map_err(e)?;
        if let Some((t, tol)) = self.target {
            let band = RGBColor(200, 230, 200).mix(0.5);
            chart
                .draw_series(std::iter::once(Rectangle::new([(x0, t - tol), (x1, t + tol)], band.filled())))
                .map_err(e)?;
            let line = RGBColor(20, 20, 20).stroke_width(2);
            chart
                .draw_series(DashedLineSeries::new(vec![(x0, t), (x1, t)], 8, 5, line))
                .map_err(e)?
                .label(format!("target ({t:+.0}°, band ±{tol:.0}°)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], line));
        }
        draw_lines(&mut chart, &self.series)?;
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

type Chart2d<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The 2-D chart every figure but the 3-D one uses: caption, margins, label areas.
fn chart_2d<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart2d<'a, DB>, String> {
    ChartBuilder::on(root)
        .caption(title, (FONT, TITLE_PX))
        .margin(14)
        .x_label_area_size(56)
        .y_label_area_size(88)
        .build_cartesian_2d(x, y)
        .map_err(e)
}

/// One line with dots per `(name, colour, points)`; non-finite values are left out.
fn draw_lines<'a, DB: DrawingBackend + 'a>(chart: &mut Chart2d<'a, DB>, series: &[Line]) -> Result<(), String> {
    for (name, colour, pts) in series {
        let c = *colour;
        let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(e)?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(e)?;
    }
    Ok(())
}

fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart2d<'a, DB>,
    at: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .label_font((FONT, 19))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(at)
        .draw()
        .map_err(e)
}

/// Distinct line colours for series (not hue-coded, so they do not read as stimulus colours).
pub const SERIES: [RGBColor; 6] = [
    RGBColor(31, 78, 121),
    RGBColor(214, 96, 77),
    RGBColor(90, 160, 90),
    RGBColor(128, 100, 162),
    RGBColor(120, 120, 120),
    RGBColor(200, 150, 40),
];
