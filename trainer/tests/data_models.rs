//! Loader round trip on generated files, and every model's output shape.

use alcf_trainer::config::ModelKind;
use alcf_trainer::data::{self, RawSet, SynthSpec};
use alcf_trainer::models;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

#[test]
fn generated_files_round_trip_through_the_loader() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = SynthSpec { train_per_class: 3, test_per_class: 2, seed: 7 };
    let dir = data::write_synthetic(tmp.path(), &spec).unwrap();
    assert_eq!(dir, tmp.path().join("cifar-100-binary"));
    for f in ["train.bin", "test.bin", "fine_label_names.txt", "coarse_label_names.txt"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    assert_eq!(std::fs::metadata(dir.join("train.bin")).unwrap().len(), 300 * data::RECORD_BYTES as u64);
    let fine_names = std::fs::read_to_string(dir.join("fine_label_names.txt")).unwrap();
    assert_eq!(fine_names.lines().count(), 100);

    // Reading gives back exactly what the generator made.
    let train = data::read_bin(&dir.join("train.bin")).unwrap();
    assert_eq!(train, data::synth_set(3, 7));
    assert_eq!(train.len(), 300);
    let mut counts = [0usize; 100];
    for (&f, &c) in train.fine.iter().zip(&train.coarse) {
        counts[f as usize] += 1;
        assert_eq!(c, f / 5);
    }
    assert!(counts.iter().all(|&n| n == 3));

    // write -> read is the identity on an arbitrary set.
    let set = RawSet {
        images: (0..2 * data::IMAGE_BYTES).map(|i| (i % 256) as u8).collect(),
        fine: vec![99, 0],
        coarse: vec![19, 0],
    };
    let p = tmp.path().join("x.bin");
    data::write_bin(&p, &set).unwrap();
    assert_eq!(data::read_bin(&p).unwrap(), set);

    // Tensors: first image's pixels land in CHW order.
    let s = data::Split::from_raw(&set, &[0], Device::Cpu);
    assert_eq!(s.x.size(), vec![1, 3, 32, 32]);
    assert_eq!(s.x.int64_value(&[0, 1, 0, 0]), (1024 % 256) as i64);
    assert_eq!(s.x.int64_value(&[0, 0, 1, 2]), 34);
    assert_eq!(s.y.int64_value(&[0]), 99);

    // Train/val split through the public loader, with limits; accepts DIR or DIR/cifar-100-binary.
    let (tr, va) = data::load_train_val(tmp.path(), 0.34, 0, 0, Device::Cpu).unwrap();
    assert_eq!((tr.len(), va.len()), (200, 100));
    let (tr, va) = data::load_train_val(&dir, 0.34, 50, 7, Device::Cpu).unwrap();
    assert_eq!((tr.len(), va.len()), (50, 7));
    assert_eq!(tr.x.kind(), Kind::Uint8);
    let test = data::load_test(tmp.path(), Device::Cpu).unwrap();
    assert_eq!(test.len(), 200);
}

#[test]
fn loader_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let e = data::load_train_val(tmp.path(), 0.1, 0, 0, Device::Cpu).err().unwrap().to_string();
    assert!(e.contains("gen-data") && e.contains("download"), "{e}");
    let p = tmp.path().join("train.bin");
    std::fs::write(&p, vec![0u8; 100]).unwrap();
    let e = data::read_bin(&p).unwrap_err().to_string();
    assert!(e.contains("not a CIFAR-100 binary file"), "{e}");
    let mut rec = vec![0u8; data::RECORD_BYTES];
    rec[1] = 100;
    std::fs::write(&p, &rec).unwrap();
    let e = data::read_bin(&p).unwrap_err().to_string();
    assert!(e.contains("fine=100"), "{e}");
}

#[test]
fn every_model_outputs_n_by_100() {
    tch::set_num_threads(2);
    let kinds = [
        ModelKind::Cnn,
        ModelKind::ResNet18,
        ModelKind::ResNet34,
        ModelKind::ResNet50,
        ModelKind::Vgg16,
        ModelKind::DenseNet121,
    ];
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    for kind in kinds {
        let vs = nn::VarStore::new(Device::Cpu);
        let m = models::build(&vs.root(), kind, 8, 3, 0.2, 100);
        tch::no_grad(|| {
            assert_eq!(m.forward_t(&x, true).size(), vec![2, 100], "{kind} train");
            assert_eq!(m.forward_t(&x, false).size(), vec![2, 100], "{kind} eval");
        });
        let n = models::count_params(&vs);
        assert!(n > 1000, "{kind}: {n} parameters");
        eprintln!("{kind}: {n} parameters");
    }
}

#[test]
fn synthetic_classes_are_distinguishable_by_mean_colour() {
    // The generator's promise: class structure a small network can learn.
    let s = data::synth_set(4, 1);
    let mean = |i: usize, ch: usize| -> f64 {
        let img = &s.images[i * data::IMAGE_BYTES..(i + 1) * data::IMAGE_BYTES];
        img[ch * 1024..(ch + 1) * 1024].iter().map(|&b| b as f64).sum::<f64>() / 1024.0
    };
    // Nearest-class-mean on colour alone is far above chance (1%).
    let mut centroids = vec![[0.0f64; 3]; 100];
    for i in 0..s.len() {
        for (ch, c) in centroids[s.fine[i] as usize].iter_mut().enumerate() {
            *c += mean(i, ch) / 4.0;
        }
    }
    let probe = data::synth_set(2, 99);
    let mut correct = 0;
    for i in 0..probe.len() {
        let img = &probe.images[i * data::IMAGE_BYTES..(i + 1) * data::IMAGE_BYTES];
        let m: Vec<f64> =
            (0..3).map(|ch| img[ch * 1024..(ch + 1) * 1024].iter().map(|&b| b as f64).sum::<f64>() / 1024.0).collect();
        let best = (0..100)
            .min_by(|&a, &b| {
                let d = |c: usize| (0..3).map(|k| (centroids[c][k] - m[k]).powi(2)).sum::<f64>();
                d(a).total_cmp(&d(b))
            })
            .unwrap();
        correct += usize::from(best == probe.fine[i] as usize);
    }
    assert!(correct as f64 / probe.len() as f64 > 0.2, "{correct}/{}", probe.len());
}
