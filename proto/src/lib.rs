//! The agent <-> control-plane contract. Generated code only: conversions to domain types live
//! at the edges of the agent (`agent/src/session`) and the control plane.

pub mod v1 {
    #![allow(clippy::derive_partial_eq_without_eq, clippy::large_enum_variant)]
    tonic::include_proto!("berth.agent.v1");
}
