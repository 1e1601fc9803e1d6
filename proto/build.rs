fn main() {
    println!("cargo:rerun-if-changed=berth/agent/v1/agent.proto");
    tonic_prost_build::configure()
        .compile_protos(&["berth/agent/v1/agent.proto"], &["."])
        .expect("compiling berth/agent/v1/agent.proto (is protoc installed? apt-get install protobuf-compiler)");
}
