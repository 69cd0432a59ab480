//! The posterior kinds as flow-core transforms: the amortized ones are
//! `flow_core::Amortized` (whose harness tests are flow-core's), with the encoder's
//! parameter count; the others emit nothing per step.

use burn::backend::NdArray;
use flow_core::{AmortizedStep, SylvesterQ};
use train_vae::{model::ModelConfig, posterior::FlowKind};

fn config(flow: FlowKind, latent: usize) -> ModelConfig {
    ModelConfig {
        latent,
        flow,
        n_flows: 3,
        ortho_vecs: 2,
        householder: 4,
        ..ModelConfig::default()
    }
}

#[test]
fn amortized_kinds_give_the_encoders_width() {
    let d = 5;
    for (kind, step, per_step) in [
        (FlowKind::Planar, AmortizedStep::Planar, 2 * d + 1),
        (FlowKind::Radial, AmortizedStep::Radial, d + 2),
        (FlowKind::Householder, AmortizedStep::Householder, d),
        (
            FlowKind::SylvesterO,
            AmortizedStep::Sylvester(SylvesterQ::Orthogonal { columns: 2 }),
            2 * 2 + 2 * 2 + d * 2,
        ),
        (
            FlowKind::SylvesterH,
            AmortizedStep::Sylvester(SylvesterQ::Householder { reflections: 4 }),
            d * d + 2 * d + 4 * d,
        ),
        (
            FlowKind::SylvesterT,
            AmortizedStep::Sylvester(SylvesterQ::Triangular),
            d * d + 2 * d,
        ),
    ] {
        let cfg = config(kind, d);
        assert_eq!(cfg.amortized_step(), Some(step), "{kind}");
        assert_eq!(cfg.encoder_outputs(), 2 * d + 3 * per_step, "{kind}");
        cfg.init::<NdArray>(&Default::default()).unwrap();
    }
    for kind in [FlowKind::None, FlowKind::Iaf] {
        let cfg = config(kind, d);
        assert_eq!(cfg.amortized_step(), None);
        assert_eq!(cfg.encoder_outputs(), 2 * d);
    }
}

/// The papers' knobs out of range are errors that name the flag.
#[test]
fn sylvester_knobs_out_of_range_are_named_errors() {
    for (cfg, flag) in [
        (
            ModelConfig {
                ortho_vecs: 6,
                ..config(FlowKind::SylvesterO, 5)
            },
            "ortho-vecs",
        ),
        (
            ModelConfig {
                ortho_vecs: 0,
                ..config(FlowKind::SylvesterO, 5)
            },
            "ortho-vecs",
        ),
        (
            ModelConfig {
                householder: 0,
                ..config(FlowKind::SylvesterH, 5)
            },
            "householder",
        ),
    ] {
        let err = cfg.init::<NdArray>(&Default::default()).unwrap_err();
        assert!(err.to_string().contains(flag), "{err}");
    }
    // The knobs of other kinds are not checked.
    let ok = ModelConfig {
        ortho_vecs: 0,
        householder: 0,
        ..config(FlowKind::SylvesterT, 5)
    };
    assert!(ok.init::<NdArray>(&Default::default()).is_ok());
}
