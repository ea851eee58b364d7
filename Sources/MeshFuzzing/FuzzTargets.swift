import MeshCore
import MeshPlan
import MeshWire

/// The bodies of the fuzz targets (DESIGN.md §8): the libFuzzer executables in `Fuzz/` and the
/// property tests run the same code. Each takes arbitrary bytes and returns the invariants that
/// failed (a trap, the other possible failure, ends the process, which is what libFuzzer looks
/// for). None does I/O.
public enum FuzzTargets {
    /// `ClusterState.apply` over a sequence of requests made from the bytes, with every field's
    /// extremes; after each entry the state's invariants, and now and then the readers of the state
    /// that the coordinator and the workers run (scheduler, loss detection, lab control, a worker's
    /// sync) and a snapshot's round trip.
    public static func apply(_ data: [UInt8], steps: Int = 24) -> [String] {
        var outcomes: [String: (done: Int, refused: Int)] = [:]
        return apply(data, steps: steps, outcomes: &outcomes)
    }

    /// The same, counting each command kind's outcomes (the generator must reach past the checks).
    public static func apply(_ data: [UInt8], steps: Int, outcomes: inout [String: (done: Int, refused: Int)]) -> [String] {
        var b = FuzzBytes(data)
        var state = ClusterState()
        var index: Consensus.Index = 0
        for n in 1...3 {
            index += 1
            _ = state.apply(.init(client: .init(1), sequence: UInt64(n), command: .register(
                NodeID(UInt64(n)), name: "n\(n)", address: "127.0.0.1:\(7000 + n)",
                capacity: .init(nodeClass: n == 3 ? "gpu" : "", slots: 2, cpus: 4, memoryMB: 4096, gpus: n == 3 ? 2 : 0))), at: index)
        }
        var sequence: [UInt64: UInt64] = [:]
        var worker = Worker(node: NodeID(1))
        var lab = LabControl.Instance()
        var problems: [String] = []
        for step in 0..<steps {
            if b.isExhausted && step > 0 { break }
            // A few clients, a retry now and then (the same sequence again), sometimes an old one.
            let client = UInt64(2 + b.pick(3))
            let seq: UInt64 = switch b.pick(8) {
            case 0: sequence[client, default: 0]
            case 1: b.u64()
            default: sequence[client, default: 0] + 1
            }
            sequence[client] = max(sequence[client, default: 0], min(seq, Limits.maxIndex))
            index += 1
            let request = Generate.request(&b, state: state, client: client, sequence: seq)
            let kind = Self.kind(request.command)
            if state.apply(request, at: index).isDone { outcomes[kind, default: (0, 0)].done += 1 } else { outcomes[kind, default: (0, 0)].refused += 1 }
            problems += state.invariantViolations().map { "after entry \(index) (\(kind)): \($0)" }
            if !problems.isEmpty { return problems }
            if step % 16 == 15 { readers(&b, state, worker: &worker, lab: &lab, problems: &problems) }
        }
        readers(&b, state, worker: &worker, lab: &lab, problems: &problems)
        return problems
    }

    static func kind(_ c: ClusterState.Command) -> String {
        switch c {
        case .register: "register"
        case .unregister: "unregister"
        case .cordon: "cordon"
        case .uncordon: "uncordon"
        case .drain: "drain"
        case .requeue: "requeue"
        case .setSetting: "setSetting"
        case .submit: "submit"
        case .assign: "assign"
        case .started: "started"
        case .finished: "finished"
        case .lost: "lost"
        case .cancel: "cancel"
        case .retry: "retry"
        case .hold: "hold"
        case .release: "release"
        case .stored: "stored"
        case .plan: "plan"
        }
    }

    /// What the coordinator and a worker do with a state, at times from the bytes.
    static func readers(_ b: inout FuzzBytes, _ state: ClusterState, worker: inout Worker, lab: inout LabControl.Instance, problems: inout [String]) {
        let now = Instant(nanoseconds: b.i64())
        let nodes = state.nodes.values.map { Scheduler.Node(id: $0.id, capacity: $0.capacity, accepting: b.pick(4) > 0) }
        let plan = Scheduler.plan(state, nodes: nodes, term: b.u64(), at: b.i64(), limit: 1 + b.pick(200))
        if !plan.isEmpty {
            var s = state
            _ = s.apply(.init(client: .init(99), sequence: 1, command: .assign(plan)), at: state.appliedIndex + 1)
            problems += s.invariantViolations().map { "after a scheduler's plan: \($0)" }
        }
        var contact: [NodeID: Instant] = [:]
        for n in state.nodes.keys where b.bool() { contact[n] = Instant(nanoseconds: b.i64()) }
        var settings = JobControl.Settings()
        if b.bool() { settings.defaultLease = .seconds(double: Double(b.i64())) }
        _ = JobControl.lost(state, lastContact: contact, leaderSince: Instant(nanoseconds: b.i64()), self: NodeID(1), now: now, settings: settings, at: 0)
        _ = lab.tick(state, term: b.u64(), ready: Set(state.nodes.keys), me: NodeID(1), now: now, at: b.i64())
        _ = worker.sync(with: state, at: b.i64())
        let bytes = Wire.encode(state)
        do {
            let back = try Wire.clusterState(bytes)
            if back != state {
                var parts: [String] = []
                if back.nodes != state.nodes { parts.append("nodes") }
                if back.sessions != state.sessions { parts.append("sessions \(state.sessions.filter { back.sessions[$0.key] != $0.value }.prefix(2))") }
                if back.settings != state.settings { parts.append("settings") }
                if back.jobs != state.jobs { parts.append("jobs \(state.jobs.filter { back.jobs[$0.key] != $0.value }.keys.prefix(3))") }
                if back.sweeps != state.sweeps { parts.append("sweeps") }
                if back.stateCounts != state.stateCounts { parts.append("counts") }
                if back.nextJobID != state.nextJobID || back.nextSweepID != state.nextSweepID { parts.append("next ids") }
                problems.append("a snapshot does not restore the state it was taken of: \(parts.isEmpty ? "an index" : parts.joined(separator: ", "))")
            }
        } catch {
            problems.append("a snapshot of the state cannot be read back: \(error)")
        }
    }

    /// Arbitrary bytes as a message from the network, a log entry and a snapshot: decoding never
    /// traps, and what decodes is fed to the state machines that would receive it (Raft, the
    /// membership protocol, the replicated state).
    public static func wire(_ data: [UInt8]) -> [String] {
        _ = try? Wire.entry(bytes: data)
        if let s = try? Wire.clusterState(data) {
            _ = s.invariantViolations()
            _ = Wire.encode(s)
        }
        guard let envelope = try? Wire.decode(data) else { return [] }
        _ = Wire.encode(envelope)
        switch envelope.body {
        case .raft(let w)?:
            guard let p = try? Wire.packet(w) else { return [] }
            var leader = Consensus.Instance(id: p.to, stored: .bootstrap(p.to), seed: 1, now: .zero)
            _ = leader.start(now: .zero)
            _ = leader.onPacket(p, now: .zero + .seconds(1))
            _ = leader.onTick(now: .zero + .seconds(2))
            var follower = Consensus.Instance(id: p.to, stored: Consensus.Stored(
                hardState: .init(term: 2), entries: [.init(index: 1, term: 1, payload: .configuration(.init(voters: [p.to, p.from])))]), seed: 1, now: .zero)
            _ = follower.onPacket(p, now: .zero + .seconds(1))
            _ = follower.onTick(now: .zero + .seconds(3))
        case .gossip(let w)?:
            guard let p = try? Wire.packet(w) else { return [] }
            var m = Membership.Instance(id: NodeID(7), meta: .init(name: "me", address: "127.0.0.1:1"), seed: 1, now: .zero)
            _ = m.start(now: .zero)
            _ = m.onPacket(p, now: .zero + .seconds(1))
            _ = m.onTick(now: .zero + .seconds(2))
        case .writeRequest(let w)?:
            return request(w.request)
        case .forwardedWrite(let w)?:
            return request(w.request)
        case .statusReply(let r)?:
            for j in r.jobs { _ = try? Wire.job(j) }
            for s in r.sweeps { _ = try? Wire.sweep(s) }
        default:
            break
        }
        return []
    }

    /// A request from the wire applied to a small mesh.
    static func request(_ w: WireClusterRequest) -> [String] {
        guard let r = try? Wire.request(w) else { return [] }
        var state = ClusterState()
        _ = state.apply(.init(client: .init(1), sequence: 1, command: .register(NodeID(1), name: "n1", address: "a", capacity: .init(slots: 2))), at: 1)
        _ = state.apply(.init(client: .init(1), sequence: 2, command: .submit(JobSpec(command: ["true"]), Provenance(), at: 0, via: NodeID(1))), at: 2)
        _ = state.apply(r, at: 3)
        return state.invariantViolations()
    }

    /// Arbitrary text as a plan file: parsing and expanding never trap; a bad plan is an error.
    public static func plan(_ data: [UInt8]) -> [String] {
        guard data.count <= 64 << 10 else { return [] }
        let text = String(decoding: data, as: UTF8.self)
        guard let plan = try? Plan.parse(yaml: text) else { return [] }
        _ = try? plan.expand(limit: 2000)
        return []
    }

    /// One envelope of each kind the fuzzers start from (also the wire corpus's seeds, and what the in-process agent test mutates).
    public static func seedEnvelopes() -> [[UInt8]] {
        let a = NodeID(1), b = NodeID(2)
        let spec = JobSpec(command: ["/bin/sh", "-c", "true"], leaseSeconds: 60)
        let requests: [ClusterState.Command] = [
            .register(b, name: "n2", address: "127.0.0.1:2", capacity: .init(slots: 2, gpus: 1)),
            .submit(spec, Provenance(), at: 1, via: a), .cancel([1], reason: "x", at: 1),
            .finished(.init(job: 1, attempt: 1, node: a, outcome: .exited(0), results: [.init(path: "r", size: 1, sha256: "00")], at: 2)),
            .drain(name: "n1", deadlineMillis: 1000, leaving: false), .setSetting(key: "lease_seconds", value: "30"),
        ]
        var out = requests.map { c -> [UInt8] in
            var w = WireWriteRequest()
            w.request = Wire.wire(ClusterState.Request(client: .init(5), sequence: 1, command: c))
            return Wire.encode(.writeRequest(w), requestID: 1)
        }
        let packets: [Consensus.Message] = [
            .appendResponse(.init(success: true, index: 3)), .preVote(lastIndex: 3, lastTerm: 1), .vote(lastIndex: 3, lastTerm: 1, transfer: false),
            .append(prevIndex: 1, prevTerm: 1, entries: [.init(index: 2, term: 2, payload: .noop)], commit: 1),
            .snapshotResponse(matchIndex: 2), .timeoutNow,
        ]
        out += packets.map { Wire.encode(Consensus.Packet(from: b, to: a, term: 2, message: $0, clock: .init(nanoseconds: 5), echo: .init(nanoseconds: 1))) }
        out.append(Wire.encode(Membership.Packet(from: b, fromAddress: "127.0.0.1:2", message: .ping(seq: 1, target: a),
                                                 updates: [.alive(b, incarnation: 3, meta: .init(name: "n2", address: "127.0.0.1:2"))])))
        var g = WireLogRequest()
        g.job = 1
        g.offset = 1 << 63
        out.append(Wire.encode(.logRequest(g), requestID: 3))
        return out
    }

    /// Requests that stopped 0.3 agents (issue "No input can stop the mesh"), as envelopes.
    public static func poisonEnvelopes() -> [[UInt8]] {
        func write(_ c: ClusterState.Command) -> [UInt8] {
            var w = WireWriteRequest()
            w.request = Wire.wire(ClusterState.Request(client: .init(9), sequence: 1, command: c))
            return Wire.encode(.writeRequest(w), requestID: 2)
        }
        var get = WireBlobGet()
        get.hash = String(repeating: "a", count: 64)
        get.offset = 1 << 63
        var log = WireLogRequest()
        log.job = 1
        log.offset = .max
        return [
            write(.submit(JobSpec(command: ["true"], leaseSeconds: .max), Provenance(), at: 0, via: NodeID(0))),
            write(.submit(JobSpec(command: ["true"], timeoutSeconds: .max), Provenance(), at: 0, via: NodeID(0))),
            write(.drain(name: "a", deadlineMillis: .max, leaving: false)),
            write(.setSetting(key: "lease_seconds", value: "1e300")),
            Wire.encode(Consensus.Packet(from: NodeID(3), to: NodeID(1), term: .max, message: .appendResponse(.init(success: false, index: .max)))),
            Wire.encode(.blobGet(get), requestID: 3),
            Wire.encode(.logRequest(log), requestID: 4),
        ]
    }
}
