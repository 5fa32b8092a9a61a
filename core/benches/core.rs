//! Benchmarks of the pure core: zone rendering/updates and mesh configs.
//! Small sample sizes keep the whole run well under 90 s.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use privnet_core::mesh::{DEFAULT_MESH_CIDR, Mesh, MeshNode};
use privnet_core::naming::{DEFAULT_DOMAIN, PrivateName};
use privnet_core::zone::{LookupResult, Zone, ZoneConfig, ZoneEndpoint};

const PN: &str = "pn-0b5e7c1a-4f3d-4a8e-9d2c-1f6b3a5e7d90";

fn endpoint(i: u32) -> ZoneEndpoint {
    let types = ["web", "worker", "clock"];
    ZoneEndpoint {
        name: PrivateName::new(
            i / 300 + 1,
            types[(i % 3) as usize],
            &format!("ap-{:08x}-4f3d-4a8e-9d2c-1f6b3a5e7d90", (i / 3) % 100),
            PN,
            DEFAULT_DOMAIN,
        )
        .unwrap(),
        address: Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 2)) + i),
    }
}

fn zone_of(count: u32) -> Zone {
    let mut zone = Zone::new(PN, "10.0.0.0/14".parse().unwrap(), ZoneConfig::default()).unwrap();
    for i in 0..count {
        zone.upsert(&endpoint(i)).unwrap();
    }
    assert_eq!(zone.len(), count as usize);
    zone
}

fn mesh_node(i: u32) -> MeshNode {
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&i.to_be_bytes());
    MeshNode {
        name: format!("node-{i:05}"),
        public_key: base64::engine::general_purpose::STANDARD.encode(key),
        endpoint: SocketAddr::from((Ipv4Addr::from(0xC0A8_0000 + i), 51820)),
        vtep: Ipv4Addr::from(u32::from(DEFAULT_MESH_CIDR.network()) + i + 1),
    }
}

fn mesh_of(count: u32) -> Mesh {
    let nodes: Vec<MeshNode> = (0..count).map(mesh_node).collect();
    Mesh::from_nodes(DEFAULT_MESH_CIDR, &nodes).unwrap()
}

fn zone_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("zone");
    for count in [10_000u32, 100_000] {
        let zone = zone_of(count);
        group.bench_with_input(BenchmarkId::new("render", count), &zone, |b, z| {
            b.iter(|| black_box(z.render()))
        });
        group.bench_with_input(BenchmarkId::new("render_reverse", count), &zone, |b, z| {
            b.iter(|| black_box(z.render_reverse()))
        });
    }
    let mut zone = zone_of(100_000);
    let mut moving = endpoint(50_000);
    let qname = moving.name.fqdn(DEFAULT_DOMAIN);
    let mut flip = false;
    group.bench_function("upsert_and_lookup/100000", |b| {
        b.iter(|| {
            // Alternate between two addresses so every upsert is a real change.
            flip = !flip;
            moving.address =
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 2, 0, 2)) + u32::from(flip));
            assert!(zone.upsert(&moving).unwrap());
            assert!(matches!(
                zone.lookup(black_box(&qname)),
                LookupResult::Found(_)
            ));
        })
    });
    group.bench_function("lookup_app/100000", |b| {
        let app = endpoint(0).name.app_name(DEFAULT_DOMAIN);
        b.iter(|| black_box(zone.lookup(black_box(&app))))
    });
    group.finish();
}

fn mesh_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("mesh");
    for count in [500u32, 5000] {
        let mesh = mesh_of(count);
        let me = mesh_node(count / 2).name;
        group.bench_with_input(BenchmarkId::new("node_config", count), &mesh, |b, m| {
            b.iter(|| black_box(m.node_config(&me, Some(25)).unwrap()))
        });
    }
    let mut mesh = mesh_of(5000);
    let newcomer = mesh_node(5000);
    group.bench_function("add_node/5000", |b| {
        // One cycle = allocate a VTEP, upsert the node, its peer entry, then
        // remove it again so every iteration starts from 5000 nodes.
        b.iter(|| {
            let mut node = newcomer.clone();
            node.vtep = mesh.allocate_vtep(&node.name).unwrap();
            mesh.upsert(node).unwrap();
            black_box(mesh.peer(&newcomer.name, Some(25)));
            mesh.remove(&newcomer.name).unwrap();
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = zone_benches, mesh_benches
}
criterion_main!(benches);
