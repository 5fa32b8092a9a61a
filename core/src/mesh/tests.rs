use super::*;

fn key(i: u32) -> String {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn node(i: u32) -> MeshNode {
    MeshNode {
        name: format!("node-{i:04}"),
        public_key: key(i),
        endpoint: SocketAddr::from(([192, 168, 0, (i % 250) as u8], 51820)),
        vtep: Ipv4Addr::from(u32::from(DEFAULT_MESH_CIDR.network()) + i + 1),
    }
}

#[test]
fn full_mesh_config() {
    let nodes: Vec<MeshNode> = [2, 0, 1].into_iter().map(node).collect();
    let cfg = node_config(&nodes, "node-0001", DEFAULT_MESH_CIDR, Some(25)).unwrap();
    assert_eq!(cfg.address, "198.19.0.2/16".parse::<Ipv4Net>().unwrap());
    let names: Vec<_> = cfg.peers.iter().map(|p| p.public_key.clone()).collect();
    assert_eq!(
        names,
        vec![key(0), key(2)],
        "sorted by node name, self excluded"
    );
    assert_eq!(
        cfg.peers[0].allowed_ips,
        vec!["198.19.0.1/32".parse::<Ipv4Net>().unwrap()]
    );
    assert_eq!(cfg.peers[1].endpoint, "192.168.0.2:51820".parse().unwrap());
    assert_eq!(cfg.peers[0].persistent_keepalive, Some(25));
}

#[test]
fn errors() {
    let mut dup = vec![node(0), node(1)];
    dup[1].name = dup[0].name.clone();
    assert_eq!(
        node_config(&dup, "node-0000", DEFAULT_MESH_CIDR, None),
        Err(MeshError::DuplicateName("node-0000".into()))
    );
    let mut dup = vec![node(0), node(1)];
    dup[1].public_key = key(0);
    assert!(matches!(
        node_config(&dup, "node-0000", DEFAULT_MESH_CIDR, None),
        Err(MeshError::DuplicateKey { .. })
    ));
    let mut dup = vec![node(0), node(1)];
    dup[1].vtep = dup[0].vtep;
    assert!(matches!(
        node_config(&dup, "node-0000", DEFAULT_MESH_CIDR, None),
        Err(MeshError::DuplicateVtep { other, .. }) if other == "node-0000"
    ));
    let mut bad = vec![node(0)];
    bad[0].public_key = "not-a-key".into();
    assert!(matches!(
        node_config(&bad, "node-0000", DEFAULT_MESH_CIDR, None),
        Err(MeshError::InvalidKey { .. })
    ));
    let mut bad = vec![node(0)];
    bad[0].vtep = Ipv4Addr::new(10, 0, 0, 1);
    assert!(matches!(
        node_config(&bad, "node-0000", DEFAULT_MESH_CIDR, None),
        Err(MeshError::VtepOutOfRange { .. })
    ));
    assert_eq!(
        node_config(&[node(0)], "node-9999", DEFAULT_MESH_CIDR, None),
        Err(MeshError::SelfMissing("node-9999".into()))
    );
}

#[test]
fn upsert_replaces_and_remove_frees() {
    let mut mesh = Mesh::from_nodes(DEFAULT_MESH_CIDR, &[node(0), node(1)]).unwrap();
    let mut moved = node(1);
    moved.endpoint = "192.168.9.9:1".parse().unwrap();
    mesh.upsert(moved.clone()).unwrap();
    assert_eq!(mesh.get("node-0001"), Some(&moved));
    assert_eq!(mesh.len(), 2);
    let mut steal = node(2);
    steal.public_key = key(0);
    assert!(mesh.upsert(steal).is_err());
    assert_eq!(mesh.len(), 2, "failed upsert changes nothing");
    mesh.remove("node-0000");
    let mut reuse = node(2);
    reuse.public_key = key(0);
    reuse.vtep = node(0).vtep;
    mesh.upsert(reuse).unwrap();
}

#[test]
fn vtep_allocation_is_lowest_free_and_stable() {
    let mut mesh = Mesh::new("10.9.0.0/29".parse().unwrap()).unwrap();
    let add = |mesh: &mut Mesh, name: &str, i: u32| {
        let vtep = mesh.allocate_vtep(name).unwrap();
        let mut n = node(i);
        n.name = name.into();
        n.vtep = vtep;
        mesh.upsert(n).unwrap();
        vtep
    };
    assert_eq!(add(&mut mesh, "a", 0), Ipv4Addr::new(10, 9, 0, 1));
    assert_eq!(add(&mut mesh, "b", 1), Ipv4Addr::new(10, 9, 0, 2));
    assert_eq!(
        mesh.allocate_vtep("a").unwrap(),
        Ipv4Addr::new(10, 9, 0, 1),
        "stable"
    );
    mesh.remove("a");
    assert_eq!(add(&mut mesh, "c", 2), Ipv4Addr::new(10, 9, 0, 1));
    for (i, name) in ["d", "e", "f", "g"].into_iter().enumerate() {
        add(&mut mesh, name, 3 + i as u32);
    }
    assert!(matches!(
        mesh.allocate_vtep("h"),
        Err(MeshError::Exhausted { capacity: 6, .. })
    ));
}

#[test]
fn diff_of_peers() {
    let peers = |ids: &[u32]| -> Vec<WgPeer> {
        let mesh = Mesh::from_nodes(
            DEFAULT_MESH_CIDR,
            &ids.iter().map(|i| node(*i)).collect::<Vec<_>>(),
        )
        .unwrap();
        ids.iter()
            .map(|i| mesh.peer(&node(*i).name, None).unwrap())
            .collect()
    };
    let current = peers(&[1, 2, 3]);
    let mut desired = peers(&[2, 3, 4]);
    desired[1].endpoint = "1.2.3.4:5".parse().unwrap();
    let diff = diff_peers(&current, &desired);
    assert_eq!(diff.add, vec![desired[2].clone()]);
    assert_eq!(diff.update, vec![desired[1].clone()]);
    assert_eq!(diff.remove, vec![key(1)]);
    assert!(diff_peers(&desired, &desired).is_empty());
    let mut reordered = desired.clone();
    reordered[0].allowed_ips = vec![desired[0].allowed_ips[0], desired[0].allowed_ips[0]];
    assert!(
        diff_peers(&reordered, &desired).is_empty(),
        "allowed-ips compared as sets"
    );
    let mut off = desired.clone();
    off[0].persistent_keepalive = Some(0);
    assert!(diff_peers(&off, &desired).is_empty(), "keepalive 0 is off");
    off[0].persistent_keepalive = Some(25);
    assert_eq!(diff_peers(&off, &desired).update, vec![desired[0].clone()]);
}

#[test]
fn large_mesh_is_fast() {
    let nodes: Vec<MeshNode> = (0..5000).map(node).collect();
    let mut mesh = Mesh::from_nodes(DEFAULT_MESH_CIDR, &nodes).unwrap();
    let started = std::time::Instant::now();
    let cfg = mesh.node_config("node-2500", Some(25)).unwrap();
    assert_eq!(cfg.peers.len(), 4999);
    let extra = node(5000);
    mesh.upsert(extra).unwrap();
    // Debug build: generous bound; the release figures are in the bench.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn mesh_keeps_vteps_of_known_nodes() {
    let node = |name: &str, key: &str| NodeInfo {
        name: name.into(),
        public_key: key.into(),
        endpoint: "192.168.1.1:51820".parse().unwrap(),
        vtep: None,
        next_public_key: None,
        accepted_keys: Vec::new(),
    };
    let k1 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let k2 = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let cidr = "100.64.0.0/16".parse().unwrap();
    let first = plan_mesh(cidr, &[node("n2", k2)], &[]).unwrap();
    let both = plan_mesh(cidr, &[node("n1", k1), node("n2", k2)], &first).unwrap();
    assert_eq!(
        both.iter().find(|n| n.name == "n2").unwrap().vtep,
        first[0].vtep
    );
    assert_ne!(both[0].vtep, both[1].vtep);
}
