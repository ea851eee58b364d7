import Benchmark
import MeshCore
import MeshWire

/// Realistic messages, built from MeshCore values the way the agent and the CLI build them.
enum WireFixtures {
    static func hex(_ rng: inout SeededRandom, _ digits: Int) -> String {
        var s = ""
        while s.count < digits { s += String(rng.next(), radix: 16) }
        return String(s.prefix(digits))
    }

    static func meta(_ i: Int, _ rng: inout SeededRandom) -> Membership.Meta {
        let gpu = i % 4 == 0
        return Membership.Meta(
            name: "node-\(i)", address: "node-\(i).mesh.test:7946", nodeClass: gpu ? "gpu" : "cpu",
            labels: ["zone": ["a", "b", "c"][i % 3], "arch": i % 3 == 0 ? "arm64" : "x86_64", "rack": "r\(i / 20)"],
            slots: 1 + i % 8, cpus: 2 * (1 + i % 8), memoryMB: 4_096 * (1 + i % 8), gpus: gpu ? 1 + Int(rng.next() % 4) : 0,
            gpuModel: gpu ? "NVIDIA A100-SXM4-80GB" : "", version: MeshVersion.string, protocolVersion: Wire.protocolVersion)
    }

    /// A SWIM ping carrying as many updates as one packet may (Membership.Settings.maxUpdatesPerPacket,
    /// 16): mostly `alive` with full metadata (the largest kind), some suspicions and deaths.
    static func gossipPing() -> Membership.Packet {
        var rng = SeededRandom(seed: 11)
        let updates: [Membership.Update] = (0..<16).map { i in
            let node = NodeID(rng.next() | 1)
            switch i % 8 {
            case 6: return .suspect(node, incarnation: 3, from: NodeID(rng.next() | 1))
            case 7: return .dead(node, incarnation: 5, from: NodeID(rng.next() | 1))
            default: return .alive(node, incarnation: UInt64(1 + i), meta: meta(i, &rng))
            }
        }
        return Membership.Packet(from: NodeID(rng.next() | 1), fromAddress: "node-0.mesh.test:7946",
                                 message: .ping(seq: 48_211, target: NodeID(rng.next() | 1)), updates: updates)
    }

    /// `mesh submit` of one job from a git checkout, as the CLI sends it (a write request).
    static func submitRequest() -> ClusterState.Request {
        var rng = SeededRandom(seed: 12)
        let spec = JobSpec(
            name: "resnet50-lr0.01-seed3",
            command: ["python3", "train.py", "--model", "resnet50", "--lr", "0.01", "--epochs", "90", "--seed", "3"],
            env: ["WANDB_PROJECT": "vision-baselines", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "8"],
            resources: Resources(slots: 1, cpus: 8, memoryMB: 32_000, gpus: 1),
            nodeClass: "gpu", labels: ["zone": "b"], timeoutSeconds: 86_400, retries: 2, priority: 1,
            results: ["out/metrics.json", "out/*.csv", "checkpoints/final.pt"], leaseSeconds: 60,
            workdir: "experiments/resnet",
            parameters: [Parameter("lr", "0.01"), Parameter("seed", "3"), Parameter("model", "resnet50")],
            identity: hex(&rng, 64))
        let provenance = Provenance(
            code: .git, remote: "git@example.test:lab/vision.git", commit: hex(&rng, 40), branch: "main",
            diffSummary: " experiments/resnet/train.py | 14 +++++++++-----\n 1 file changed, 9 insertions(+), 5 deletions(-)",
            directory: "/home/alice/src/vision",
            bundle: BlobRef(hash: hex(&rng, 64), size: 18_734_112, holders: [NodeID(rng.next()), NodeID(rng.next()), NodeID(rng.next())]),
            submitter: "alice@workstation")
        return ClusterState.Request(client: .init(rng.next() | 1), sequence: 1, command: .submit(spec, provenance, at: 0, via: NodeID(0)))
    }

    /// What a coordinator answers `mesh status` in a mesh of `count` nodes: every member as gossip
    /// sees it, the replicated node registry, the coordinator's state, the settings, and the
    /// jobs that are not over (one running on each node).
    static func statusReply(nodes count: Int) -> WireStatusReply {
        var rng = SeededRandom(seed: 13)
        let ids = (0..<count).map { _ in NodeID(rng.next() | 1) }
        var reply = WireStatusReply()
        reply.node = .with {
            $0.name = "node-0"
            $0.version = MeshVersion.string
            $0.protocolVersion = Wire.protocolVersion
            $0.meshFingerprint = hex(&rng, 64)
            $0.advertise = "node-0.mesh.test:7946"
        }
        reply.nodeID = ids[0].rawValue
        reply.gossipSent = 1_284_112
        reply.gossipReceived = 1_283_907
        reply.uptimeSeconds = 86_400 * 3.5
        reply.members = ids.enumerated().map { i, id in
            var s = WireMemberStatus()
            s.record = Wire.wire(Membership.Record(id: id, meta: meta(i, &rng), incarnation: UInt64(1 + i % 3), state: i % 37 == 5 ? .suspect : .alive))
            s.lastHeardMsAgo = Int64(rng.next() % 2_000)
            s.stateSinceMsAgo = Int64(rng.next() % 86_400_000)
            return s
        }
        reply.join = .with { $0.state = .joined }
        reply.coordinator = .with {
            $0.leader = ids[0].rawValue
            $0.term = 12
            $0.role = Consensus.Role.leader.rawValue
            $0.voters = ids.prefix(5).map(\.rawValue)
            $0.learners = ids.dropFirst(5).map(\.rawValue)
            $0.commitIndex = 1_904_331
            $0.appliedIndex = 1_904_331
            $0.faultTolerance = 2
            $0.fromLeader = true
        }
        reply.nodes = ids.enumerated().map { i, id in
            let m = meta(i, &rng)
            let capacity = ClusterState.Capacity(nodeClass: m.nodeClass, labels: m.labels, slots: m.slots, cpus: m.cpus, memoryMB: m.memoryMB, gpus: m.gpus)
            return Wire.wire(ClusterState.Node(id: id, name: m.name, address: m.address, cordoned: i == 17,
                                               cordonReason: i == 17 ? "disk replacement" : "", registeredAt: UInt64(10 + i), capacity: capacity))
        }
        reply.settings = ["kill_grace_seconds": "10", "default_lease_seconds": "60"]
        let at: Int64 = 1_750_000_000_000
        reply.jobs = ids.enumerated().map { i, node in
            let id = JobID(50_000 + i)
            var attempt = Attempt(number: 1, node: node, term: 12, gpus: i % 4 == 0 ? [0] : [], assignedAt: at)
            attempt.startedAt = at + 120
            attempt.logHolders = [node]
            let spec = JobSpec(name: "sweep-lr-\(i)", command: ["python3", "train.py", "--lr", "0.0\(1 + i % 9)", "--seed", "\(i)"],
                               resources: Resources(slots: 1, gpus: i % 4 == 0 ? 1 : 0), retries: 1, results: ["out/*.json"],
                               sweep: 9, stage: "train", parameters: [Parameter("lr", "0.0\(1 + i % 9)"), Parameter("seed", "\(i)")])
            let job = Job(
                id: id, spec: spec, provenance: Provenance(code: .git, remote: "git@example.test:lab/vision.git", commit: hex(&rng, 40), branch: "main"),
                submittedAt: at - 5_000, submittedVia: ids[0], state: .running, reason: "attempt 1 started on node-\(i)",
                history: [
                    JobEvent(state: .pending, reason: "submitted", at: at - 5_000, index: 1_900_000),
                    JobEvent(state: .assigned, reason: "attempt 1 assigned to node-\(i)", at: at, index: 1_900_100),
                    JobEvent(state: .running, reason: "attempt 1 started on node-\(i)", at: at + 120, index: 1_900_200),
                ],
                attempts: [attempt], results: [], resultsBundle: nil, cancelRequested: false, lostAttempts: 0, failedAttempts: 0)
            return Wire.wire(job)
        }
        return reply
    }

    /// A leader's append carrying 64 submitted jobs (a burst of `mesh submit`s) to a follower.
    static func raftAppend() -> Consensus.Packet {
        let base = submitRequest()
        let entries = (0..<64).map { k in
            var r = base
            r.client = .init(1_000 + UInt64(k))
            return Consensus.Entry(index: 1_904_332 + UInt64(k), term: 12, payload: .command(r))
        }
        return Consensus.Packet(from: NodeID(0xA1), to: NodeID(0xB2), term: 12,
                                message: .append(prevIndex: 1_904_331, prevTerm: 12, entries: entries, commit: 1_904_331),
                                clock: Instant(nanoseconds: 9_000_000_000), echo: Instant(nanoseconds: 8_999_000_000))
    }
}

func wireBenchmarks() {
    let config = Benchmark.Configuration(
        metrics: Metrics.standard + [Metrics.bytes],
        warmupIterations: 10,
        maxDuration: .seconds(1),
        maxIterations: 20_000
    )

    // Gossip: MeshCore packet -> bytes (Wire.encode), bytes -> MeshCore packet (Wire.decode, then
    // Wire.packet, which validates), as MembershipShell does.
    let gossip = WireFixtures.gossipPing()
    let gossipBytes = Wire.encode(gossip)
    Benchmark("Wire encode: gossip ping + 16 updates", configuration: config) { benchmark in
        let bytes = Wire.encode(gossip)
        benchmark.stopMeasurement()
        benchmark.measurement(Metrics.bytes, bytes.count)
    }
    Benchmark("Wire decode: gossip ping + 16 updates", configuration: config) { benchmark in
        do {
            guard case .gossip(let g)? = try Wire.decode(gossipBytes).body else { return benchmark.error("not gossip") }
            blackHole(try Wire.packet(g))
        } catch {
            benchmark.error("\(error)")
        }
    }

    // A submit: Request -> WireWriteRequest -> bytes (as MeshClient.write), and back to a Request
    // (as AgentHandler does for .writeRequest).
    let submit = WireFixtures.submitRequest()
    let submitBytes: [UInt8] = {
        var w = WireWriteRequest()
        w.request = Wire.wire(submit)
        return Wire.encode(.writeRequest(w), requestID: 17)
    }()
    Benchmark("Wire encode: submit request (realistic JobSpec)", configuration: config) { benchmark in
        var w = WireWriteRequest()
        w.request = Wire.wire(submit)
        let bytes = Wire.encode(.writeRequest(w), requestID: 17)
        benchmark.stopMeasurement()
        benchmark.measurement(Metrics.bytes, bytes.count)
    }
    Benchmark("Wire decode: submit request (realistic JobSpec)", configuration: config) { benchmark in
        do {
            guard case .writeRequest(let w)? = try Wire.decode(submitBytes).body else { return benchmark.error("not a write request") }
            blackHole(try Wire.request(w.request))
        } catch {
            benchmark.error("\(error)")
        }
    }

    // `mesh status` in a mesh of 100 nodes. Encode: the WireStatusReply (built once, from MeshCore
    // values) to bytes. Decode: bytes to a WireStatusReply, which is what the CLI reads.
    Benchmark("Wire encode: status reply, 100 nodes + 100 running jobs", configuration: config) { benchmark, reply in
        let bytes = Wire.encode(.statusReply(reply), requestID: 9)
        benchmark.stopMeasurement()
        benchmark.measurement(Metrics.bytes, bytes.count)
    } setup: {
        WireFixtures.statusReply(nodes: 100)
    }
    Benchmark("Wire decode: status reply, 100 nodes + 100 running jobs", configuration: config) { benchmark, bytes in
        do {
            guard case .statusReply(let r)? = try Wire.decode(bytes).body else { return benchmark.error("not a status reply") }
            blackHole(r)
        } catch {
            benchmark.error("\(error)")
        }
    } setup: {
        Wire.encode(.statusReply(WireFixtures.statusReply(nodes: 100)), requestID: 9)
    }

    // Raft replication: an append of 64 submit entries, Consensus.Packet -> bytes and back (as
    // ConsensusShell sends and receives them).
    let append = WireFixtures.raftAppend()
    let appendBytes = Wire.encode(append)
    Benchmark("Wire encode: raft append, 64 submit entries", configuration: config) { benchmark in
        let bytes = Wire.encode(append)
        benchmark.stopMeasurement()
        benchmark.measurement(Metrics.bytes, bytes.count)
    }
    Benchmark("Wire decode: raft append, 64 submit entries", configuration: config) { benchmark in
        do {
            guard case .raft(let r)? = try Wire.decode(appendBytes).body else { return benchmark.error("not a raft packet") }
            blackHole(try Wire.packet(r))
        } catch {
            benchmark.error("\(error)")
        }
    }
}
