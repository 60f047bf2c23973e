//! CIFAR-sized networks (32x32 input, 3x3 stem, no initial max-pool): ResNet-18/34/50,
//! VGG-16 with batch norm, DenseNet-121 (growth 32, bottleneck + compression 0.5), and a plain
//! CNN of configurable width and depth. Every model ends with dropout and a linear layer to
//! 100 classes.

use crate::config::ModelKind;
use tch::Tensor;
use tch::nn::{self, ModuleT};

pub type Model = nn::FuncT<'static>;

fn conv(p: nn::Path, cin: i64, cout: i64, k: i64, stride: i64, pad: i64) -> nn::Conv2D {
    let cfg = nn::ConvConfig { stride, padding: pad, bias: false, ..Default::default() };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// Batch norm initialized as PyTorch does it (weight 1, bias 0; tch's default weight is U(0, 1)).
fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, nn::BatchNormConfig { ws_init: nn::Init::Const(1.0), ..Default::default() })
}

struct Shortcut {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

fn shortcut(p: &nn::Path, cin: i64, cout: i64, stride: i64) -> Option<Shortcut> {
    (stride != 1 || cin != cout)
        .then(|| Shortcut { conv: conv(p / "down_conv", cin, cout, 1, stride, 0), bn: bn(p / "down_bn", cout) })
}

fn apply_shortcut(s: &Option<Shortcut>, x: &Tensor, train: bool) -> Tensor {
    match s {
        Some(s) => x.apply(&s.conv).apply_t(&s.bn, train),
        None => x.shallow_clone(),
    }
}

fn basic_block(p: nn::Path, cin: i64, cout: i64, stride: i64) -> Model {
    let c1 = conv(&p / "conv1", cin, cout, 3, stride, 1);
    let b1 = bn(&p / "bn1", cout);
    let c2 = conv(&p / "conv2", cout, cout, 3, 1, 1);
    let b2 = bn(&p / "bn2", cout);
    let sc = shortcut(&p, cin, cout, stride);
    nn::func_t(move |x, train| {
        let y = x.apply(&c1).apply_t(&b1, train).relu().apply(&c2).apply_t(&b2, train);
        (y + apply_shortcut(&sc, x, train)).relu()
    })
}

fn bottleneck(p: nn::Path, cin: i64, mid: i64, stride: i64) -> Model {
    let cout = mid * 4;
    let c1 = conv(&p / "conv1", cin, mid, 1, 1, 0);
    let b1 = bn(&p / "bn1", mid);
    let c2 = conv(&p / "conv2", mid, mid, 3, stride, 1);
    let b2 = bn(&p / "bn2", mid);
    let c3 = conv(&p / "conv3", mid, cout, 1, 1, 0);
    let b3 = bn(&p / "bn3", cout);
    let sc = shortcut(&p, cin, cout, stride);
    nn::func_t(move |x, train| {
        let y = x
            .apply(&c1)
            .apply_t(&b1, train)
            .relu()
            .apply(&c2)
            .apply_t(&b2, train)
            .relu()
            .apply(&c3)
            .apply_t(&b3, train);
        (y + apply_shortcut(&sc, x, train)).relu()
    })
}

fn head(p: &nn::Path, features: i64, classes: i64) -> nn::Linear {
    nn::linear(p / "fc", features, classes, Default::default())
}

fn resnet(p: &nn::Path, blocks: [usize; 4], bottle: bool, classes: i64, dropout: f64) -> Model {
    let stem_c = conv(p / "stem_conv", 3, 64, 3, 1, 1);
    let stem_b = bn(p / "stem_bn", 64);
    let mut layers: Vec<Model> = Vec::new();
    let mut cin = 64;
    for (stage, &n) in blocks.iter().enumerate() {
        let width = 64 << stage;
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            let bp = p / format!("layer{}", stage + 1) / b;
            if bottle {
                layers.push(bottleneck(bp, cin, width, stride));
                cin = width * 4;
            } else {
                layers.push(basic_block(bp, cin, width, stride));
                cin = width;
            }
        }
    }
    let fc = head(p, cin, classes);
    nn::func_t(move |x, train| {
        let mut y = x.apply(&stem_c).apply_t(&stem_b, train).relu();
        for l in &layers {
            y = y.apply_t(l, train);
        }
        y.adaptive_avg_pool2d([1, 1]).flatten(1, -1).dropout(dropout, train).apply(&fc)
    })
}

fn vgg16(p: &nn::Path, classes: i64, dropout: f64) -> Model {
    // 0 = 2x2 max-pool.
    const CFG: [i64; 18] = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];
    let mut layers: Vec<Option<(nn::Conv2D, nn::BatchNorm)>> = Vec::new();
    let mut cin = 3;
    for (i, &c) in CFG.iter().enumerate() {
        if c == 0 {
            layers.push(None);
        } else {
            let cv = nn::conv2d(p / format!("conv{i}"), cin, c, 3, nn::ConvConfig { padding: 1, ..Default::default() });
            layers.push(Some((cv, bn(p / format!("bn{i}"), c))));
            cin = c;
        }
    }
    let fc1 = nn::linear(p / "fc1", 512, 512, Default::default());
    let fc = head(p, 512, classes);
    nn::func_t(move |x, train| {
        let mut y = x.shallow_clone();
        for l in &layers {
            y = match l {
                Some((c, b)) => y.apply(c).apply_t(b, train).relu(),
                None => y.max_pool2d_default(2),
            };
        }
        y.flatten(1, -1).dropout(dropout, train).apply(&fc1).relu().dropout(dropout, train).apply(&fc)
    })
}

fn densenet121(p: &nn::Path, classes: i64, dropout: f64) -> Model {
    const GROWTH: i64 = 32;
    const BLOCKS: [usize; 4] = [6, 12, 24, 16];
    struct DenseLayer {
        b1: nn::BatchNorm,
        c1: nn::Conv2D,
        b2: nn::BatchNorm,
        c2: nn::Conv2D,
    }
    struct Transition {
        b: nn::BatchNorm,
        c: nn::Conv2D,
    }
    let stem = conv(p / "stem_conv", 3, 2 * GROWTH, 3, 1, 1);
    let mut c = 2 * GROWTH;
    let mut blocks: Vec<(Vec<DenseLayer>, Option<Transition>)> = Vec::new();
    for (bi, &n) in BLOCKS.iter().enumerate() {
        let bp = p / format!("block{}", bi + 1);
        let mut ls = Vec::new();
        for li in 0..n {
            let lp = &bp / li;
            ls.push(DenseLayer {
                b1: bn(&lp / "bn1", c),
                c1: conv(&lp / "conv1", c, 4 * GROWTH, 1, 1, 0),
                b2: bn(&lp / "bn2", 4 * GROWTH),
                c2: conv(&lp / "conv2", 4 * GROWTH, GROWTH, 3, 1, 1),
            });
            c += GROWTH;
        }
        let tr = (bi + 1 < BLOCKS.len()).then(|| {
            let out = c / 2;
            let t = Transition {
                b: bn(p / format!("trans{}_bn", bi + 1), c),
                c: conv(p / format!("trans{}_conv", bi + 1), c, out, 1, 1, 0),
            };
            c = out;
            t
        });
        blocks.push((ls, tr));
    }
    let final_bn = bn(p / "final_bn", c);
    let fc = head(p, c, classes);
    nn::func_t(move |x, train| {
        let mut y = x.apply(&stem);
        for (layers, tr) in &blocks {
            for l in layers {
                let z = y.apply_t(&l.b1, train).relu().apply(&l.c1).apply_t(&l.b2, train).relu().apply(&l.c2);
                y = Tensor::cat(&[&y, &z], 1);
            }
            if let Some(t) = tr {
                y = y.apply_t(&t.b, train).relu().apply(&t.c).avg_pool2d_default(2);
            }
        }
        y.apply_t(&final_bn, train).relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1).dropout(dropout, train).apply(&fc)
    })
}

/// Plain CNN: `depth` conv3x3-BN-ReLU layers in min(depth, 3) stages; stage s has `width * 2^s`
/// channels and ends with a 2x2 max-pool; then global average pooling, dropout, linear.
fn cnn(p: &nn::Path, width: i64, depth: i64, classes: i64, dropout: f64) -> Model {
    let stages = depth.min(3);
    let mut layers: Vec<(nn::Conv2D, nn::BatchNorm, bool)> = Vec::new();
    let mut cin = 3;
    for i in 0..depth {
        let s = i * stages / depth;
        let last_of_stage = (i + 1) * stages / depth != s || i + 1 == depth;
        let c = width << s;
        layers.push((conv(p / format!("conv{i}"), cin, c, 3, 1, 1), bn(p / format!("bn{i}"), c), last_of_stage));
        cin = c;
    }
    let fc = head(p, cin, classes);
    nn::func_t(move |x, train| {
        let mut y = x.shallow_clone();
        for (c, b, pool) in &layers {
            y = y.apply(c).apply_t(b, train).relu();
            if *pool {
                y = y.max_pool2d_default(2);
            }
        }
        y.adaptive_avg_pool2d([1, 1]).flatten(1, -1).dropout(dropout, train).apply(&fc)
    })
}

/// Build a model; its variables live under `p`.
pub fn build(p: &nn::Path, kind: ModelKind, width: i64, depth: i64, dropout: f64, classes: i64) -> Model {
    match kind {
        ModelKind::ResNet18 => resnet(p, [2, 2, 2, 2], false, classes, dropout),
        ModelKind::ResNet34 => resnet(p, [3, 4, 6, 3], false, classes, dropout),
        ModelKind::ResNet50 => resnet(p, [3, 4, 6, 3], true, classes, dropout),
        ModelKind::Vgg16 => vgg16(p, classes, dropout),
        ModelKind::DenseNet121 => densenet121(p, classes, dropout),
        ModelKind::Cnn => cnn(p, width, depth, classes, dropout),
    }
}

/// Number of trainable scalars.
pub fn count_params(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

/// Forward pass helper for callers that hold a `Model`.
pub fn forward(m: &Model, x: &Tensor, train: bool) -> Tensor {
    m.forward_t(x, train)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn cnn_shapes_for_several_depths() {
        for depth in [1, 2, 3, 5, 8] {
            let vs = nn::VarStore::new(Device::Cpu);
            let m = build(&vs.root(), ModelKind::Cnn, 4, depth, 0.1, 100);
            let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            assert_eq!(m.forward_t(&x, true).size(), vec![2, 100], "depth {depth}");
        }
    }
}
