//! The posterior kinds as flow-core transforms: the amortized ones are
//! `flow_core::Amortized` (whose harness tests are flow-core's), with the encoder's
//! parameter count; the others emit nothing per step.

use burn::backend::NdArray;
use flow_core::{AmortizedStep, Transform};
use train_vae::posterior::FlowKind;

#[test]
fn amortized_kinds_are_flow_core_transforms_with_the_encoders_width() {
    for (kind, step) in [
        (FlowKind::Planar, AmortizedStep::Planar),
        (FlowKind::Radial, AmortizedStep::Radial),
    ] {
        let flow = kind.amortized_flow::<NdArray>(5, 3).unwrap();
        assert_eq!(flow.step(), step);
        assert_eq!(Transform::<NdArray>::dim(&flow), 5);
        assert_eq!(flow.context_dim(), 3 * kind.params_per_step(5));
    }
    assert_eq!(FlowKind::Planar.params_per_step(5), 11);
    assert_eq!(FlowKind::Radial.params_per_step(5), 7);
    for kind in [FlowKind::None, FlowKind::Iaf] {
        assert_eq!(kind.params_per_step(5), 0);
        assert!(kind.amortized_flow::<NdArray>(5, 3).is_none());
    }
    assert!(FlowKind::Planar.amortized_flow::<NdArray>(5, 0).is_none());
}
