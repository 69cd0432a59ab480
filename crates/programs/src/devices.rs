//! The programs' `--devices` flag: which devices of the chosen backend train together.
//!
//! `--devices 0,1` names GPUs by index (CUDA's device numbers; wgpu's discrete GPUs),
//! `--devices all` every GPU the backend sees. wgpu also takes `default` (the adapter it
//! would pick alone), `integrated:N`, `virtual:N` and `cpu` (a software adapter such as
//! Mesa's lavapipe). One device is an ordinary run on that device. Several train
//! data-parallel through burn-train's multi-device strategy, which moves each device's
//! gradients to the first: in burn 0.21 only CUDA can (cubecl-wgpu 0.10 leaves
//! device-to-device copies unimplemented and panics), and one thread runs per device, so
//! only `cuda-unfused` takes several (burn-fusion 0.21 loses tensors used from two threads:
//! docs/architecture.md). docs/scaling.md has the whole story.

use burn::tensor::backend::{Backend, Device as _, DeviceId};

use crate::choice::Choice;

/// A parsed `--devices` value, not yet checked against a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Devices {
    /// Every GPU of the backend (`all`).
    All,
    /// The devices listed, in order (the first is the main device).
    List(Vec<Entry>),
}

/// One listed device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// The backend's default device (`default`).
    Default,
    /// A device by cubecl id: `N` is GPU `N` (type 0); wgpu's `integrated:N`, `virtual:N`
    /// and `cpu` are types 1, 2 and 3.
    Id(DeviceId),
}

impl Default for Devices {
    /// The backend's default device alone.
    fn default() -> Self {
        Devices::List(vec![Entry::Default])
    }
}

impl std::fmt::Display for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Devices::All => f.write_str("all"),
            Devices::List(entries) => {
                let names: Vec<String> = entries
                    .iter()
                    .map(|e| match e {
                        Entry::Default => "default".to_string(),
                        Entry::Id(id) => match (id.type_id, id.index_id) {
                            (0, i) => i.to_string(),
                            (1, i) => format!("integrated:{i}"),
                            (2, i) => format!("virtual:{i}"),
                            _ => "cpu".to_string(),
                        },
                    })
                    .collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

impl std::str::FromStr for Devices {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "all" {
            return Ok(Devices::All);
        }
        let mut entries = Vec::new();
        for part in s.split(',').map(str::trim) {
            let index = |t: &str| {
                t.parse::<u16>()
                    .map_err(|_| format!("`{part}`: expected a device index, got `{t}`"))
            };
            let entry = match part.split_once(':') {
                None if part == "default" => Entry::Default,
                None if part == "cpu" => Entry::Id(DeviceId::new(3, 0)),
                None => Entry::Id(DeviceId::new(0, index(part)?)),
                Some(("integrated", i)) => Entry::Id(DeviceId::new(1, index(i)?)),
                Some(("virtual", i)) => Entry::Id(DeviceId::new(2, index(i)?)),
                Some(_) => {
                    return Err(format!(
                        "`{part}`: a device is an index (0, 1, …), `default`, `cpu`, \
                         `integrated:N` or `virtual:N`, or the list is `all`"
                    ));
                }
            };
            if entries.contains(&entry) {
                return Err(format!("`{part}` is listed twice"));
            }
            entries.push(entry);
        }
        Ok(Devices::List(entries))
    }
}

impl Devices {
    /// The devices of backend `B` (run as `choice`): the list resolved, or why it cannot
    /// run there (a CPU backend, several devices on a fused backend, a wgpu-only name on
    /// CUDA, `all` without a GPU).
    pub fn resolve<B: Backend>(&self, choice: Choice) -> Result<Vec<B::Device>, String> {
        let gpu = choice.is_gpu();
        let entries = match self {
            Devices::All if gpu => {
                let n = B::device_count(0);
                if n == 0 {
                    return Err(format!("--devices all: backend `{choice}` sees no GPU"));
                }
                (0..n as u16)
                    .map(|i| Entry::Id(DeviceId::new(0, i)))
                    .collect()
            }
            Devices::All => vec![Entry::Default],
            Devices::List(entries) => entries.clone(),
        };
        if !gpu && entries != [Entry::Default] {
            return Err(format!(
                "--devices {self}: backend `{choice}` has one device (the CPU); training on \
                 several needs a GPU backend (wgpu-unfused, cuda-unfused)"
            ));
        }
        if entries.len() > 1 && !choice.is_cuda() {
            return Err(format!(
                "--devices {self}: several devices exchange gradients device to device, which \
                 burn 0.21's wgpu backend cannot do (cubecl-wgpu 0.10 leaves it \
                 unimplemented); multi-device training needs CUDA (--backend cuda-unfused)"
            ));
        }
        if entries.len() > 1 && choice.is_fused() {
            return Err(format!(
                "--devices {self}: several devices train on one thread each, and burn-fusion \
                 0.21 (backend `{choice}`) loses tensors used from two threads; use \
                 --backend {choice}-unfused"
            ));
        }
        if choice.is_cuda()
            && entries
                .iter()
                .any(|e| matches!(e, Entry::Id(id) if id.type_id != 0))
        {
            return Err(format!(
                "--devices {self}: CUDA devices are numbered (0, 1, …); `cpu`, `integrated:N` \
                 and `virtual:N` are wgpu adapters"
            ));
        }
        Ok(entries
            .iter()
            .map(|e| match e {
                Entry::Default => Default::default(),
                Entry::Id(id) => B::Device::from_id(*id),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_print_back() {
        for s in [
            "default",
            "0",
            "0,1",
            "all",
            "default,cpu",
            "integrated:0,virtual:2",
        ] {
            assert_eq!(s.parse::<Devices>().unwrap().to_string(), s);
        }
        for (bad, why) in [
            ("0,0", "twice"),
            ("gpu:1", "a device is"),
            ("x", "index"),
            ("integrated:x", "index"),
            ("", "index"),
        ] {
            let err = bad.parse::<Devices>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[cfg(feature = "ndarray")]
    #[test]
    fn a_cpu_backend_has_one_device() {
        type B = burn::backend::NdArray;
        let one = Devices::default().resolve::<B>(Choice::Ndarray).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(Devices::All.resolve::<B>(Choice::Ndarray).unwrap().len(), 1);
        let err = "0,1"
            .parse::<Devices>()
            .unwrap()
            .resolve::<B>(Choice::Ndarray)
            .unwrap_err();
        assert!(
            err.contains("one device") && err.contains("wgpu-unfused"),
            "{err}"
        );
    }

    #[cfg(feature = "wgpu")]
    #[test]
    fn wgpu_takes_one_device_by_any_name_and_refuses_several() {
        use burn::backend::wgpu::WgpuDevice;
        for (spec, device) in [
            ("cpu", WgpuDevice::Cpu),
            ("default", WgpuDevice::DefaultDevice),
            ("1", WgpuDevice::DiscreteGpu(1)),
            ("integrated:0", WgpuDevice::IntegratedGpu(0)),
        ] {
            let d: Devices = spec.parse().unwrap();
            assert_eq!(
                d.resolve::<flow_kernels::backends::WgpuInner>(Choice::WgpuUnfused)
                    .unwrap(),
                [device]
            );
        }
        let two: Devices = "default,cpu".parse().unwrap();
        for choice in [Choice::Wgpu, Choice::WgpuUnfused] {
            let err = two
                .resolve::<flow_kernels::backends::WgpuInner>(choice)
                .unwrap_err();
            assert!(err.contains("cuda-unfused"), "{err}");
        }
    }
}
