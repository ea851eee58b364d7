import MeshCore

/// Requests built from fuzzer bytes: every command of the log, with values drawn towards the
/// extremes, naming jobs, nodes and sweeps that exist often enough to reach deep into `apply`.
public enum Generate {
    public static func request(_ b: inout FuzzBytes, state: ClusterState, client: UInt64, sequence: UInt64) -> ClusterState.Request {
        ClusterState.Request(client: .init(client), sequence: sequence, command: command(&b, state: state))
    }

    public static func command(_ b: inout FuzzBytes, state: ClusterState) -> ClusterState.Command {
        let jobs = Array(state.jobs.keys.sorted().suffix(64))
        let nodes = state.nodes.keys.sorted()
        func job() -> JobID { b.bool() ? (b.element(jobs) ?? 1) : b.u64() }
        func node() -> NodeID { b.bool() ? (b.element(nodes) ?? NodeID(1)) : NodeID(b.u64()) }
        func nodeName() -> String { b.bool() ? (nodes.isEmpty ? "n0" : state.nodes[nodes[b.pick(nodes.count)]]!.name) : b.text() }
        func ids() -> [JobID] { (0..<b.count(4)).map { _ in job() } }
        func attempt(_ j: JobID) -> Int { b.bool() ? (state.jobs[j]?.attempts.count ?? 1) : b.int() }
        switch b.pick(19) {
        case 0:
            let id = b.pick(4) == 0 ? NodeID(b.u64()) : NodeID(UInt64(1 + b.pick(6)))
            return .register(id, name: b.bool() ? "n\(id.rawValue % 8)" : b.text(), address: b.text(), capacity: capacity(&b))
        case 1: return .unregister(node())
        case 2: return .cordon(name: nodeName(), reason: b.text())
        case 3: return .uncordon(name: nodeName())
        case 4: return .drain(name: nodeName(), deadlineMillis: b.i64(), leaving: b.bool())
        case 5: return .requeue(ids(), reason: b.text(), at: b.i64())
        case 6:
            let keys = ClusterState.Setting.allCases.map(\.rawValue) + ["debug_unfenced", "other"]
            let values = ["1", "0", "3", "inf", "nan", "-1", "1e300", "9223372036854775807", "18446744073709551616", "2.5", "", "echo hi"]
            return .setSetting(key: b.element(keys)!, value: b.bool() ? b.element(values)! : b.text())
        case 7, 8: return .submit(spec(&b, jobs: jobs, nodes: nodes), provenance(&b), at: b.i64(), via: node())
        case 9:
            let a = (0..<b.count(3)).map { _ -> ClusterState.Assignment in
                let j = b.bool() ? (b.element(Array(state.pendingIDs.sorted().prefix(16))) ?? job()) : job()
                return .init(job: j, attempt: b.bool() ? (state.jobs[j]?.attempts.count ?? 0) + 1 : b.int(), node: node(),
                             gpus: (0..<b.count(3)).map { _ in b.bool() ? b.pick(4) : b.int() }, term: b.u64(), at: b.i64())
            }
            return .assign(a)
        case 10:
            let j = job()
            return .started(job: j, attempt: attempt(j), node: b.bool() ? (state.jobs[j]?.current?.node ?? node()) : node(), at: b.i64())
        case 11, 12:
            let j = job()
            let results = (0..<b.count(3)).map { _ in ResultFile(path: b.text(), size: b.u64(), sha256: b.text()) }
            return .finished(.init(job: j, attempt: attempt(j), node: b.bool() ? (state.jobs[j]?.current?.node ?? node()) : node(),
                                   outcome: outcome(&b), results: results, resultsBundle: b.bool() ? blob(&b, nodes) : nil, logBytes: b.u64(),
                                   at: b.i64(), refused: (0..<b.count(2)).map { _ in b.text() }))
        case 13:
            let j = job()
            return .lost(job: j, attempt: attempt(j), reason: b.text(), at: b.i64())
        case 14: return .cancel(ids(), reason: b.text(), at: b.i64())
        case 15: return .retry(ids(), at: b.i64())
        case 16: return b.bool() ? .hold(ids(), at: b.i64()) : .release(ids(), at: b.i64())
        case 17:
            let j = job()
            return .stored(job: j, attempt: attempt(j), node: node())
        default:
            return .plan(plan(&b, state: state, jobs: jobs, nodes: nodes))
        }
    }

    static func capacity(_ b: inout FuzzBytes) -> ClusterState.Capacity {
        if b.pick(3) > 0 {
            return .init(nodeClass: ["", "gpu", "cpu"][b.pick(3)], labels: b.bool() ? ["zone": "a"] : [:], slots: 1 + b.pick(4), cpus: 4,
                         memoryMB: 4096, gpus: b.pick(3))
        }
        return .init(nodeClass: b.text(), labels: b.bool() ? [b.text(): b.text()] : [:], slots: b.int(), cpus: b.int(), memoryMB: b.int(), gpus: b.int())
    }

    static func spec(_ b: inout FuzzBytes, jobs: [JobID], nodes: [NodeID]) -> JobSpec {
        let wild = b.pick(3) == 0
        var s = JobSpec(command: b.pick(8) == 0 ? [] : ["/bin/sh", "-c", wild ? b.text() : "true"])
        if wild {
            s.resources = Resources(slots: b.int(), cpus: b.int(), memoryMB: b.int(), gpus: b.int())
            s.retries = b.int()
            s.priority = b.int()
            s.timeoutSeconds = b.u64()
            s.leaseSeconds = b.u64()
            s.name = b.text()
            s.env = b.bool() ? [b.text(): b.text()] : [:]
            s.labels = b.bool() ? [b.text(): b.text()] : [:]
            s.results = b.bool() ? [b.text()] : []
            s.workdir = b.text()
            s.identity = b.text()
        } else {
            s.resources = Resources(slots: 1 + b.pick(2), gpus: b.pick(2))
            s.retries = b.pick(3)
            s.leaseSeconds = b.bool() ? 0 : b.u64() % 100
        }
        s.nodeClass = b.pick(4) == 0 ? "gpu" : ""
        s.after = b.pick(4) == 0 ? [b.element(jobs) ?? b.u64()] : []
        s.held = b.pick(5) == 0
        if b.pick(8) == 0 { s.node = b.element(nodes) ?? NodeID(b.u64()) }
        s.canary = b.pick(10) == 0
        return s
    }

    static func provenance(_ b: inout FuzzBytes) -> Provenance {
        guard b.pick(4) == 0 else { return Provenance() }
        return Provenance(code: .git, remote: b.text(), commit: b.text(), branch: b.text(), diffSummary: b.bool() ? b.text() : "",
                          directory: b.text(), bundle: b.bool() ? blob(&b, []) : nil, submitter: b.text())
    }

    static func blob(_ b: inout FuzzBytes, _ nodes: [NodeID]) -> BlobRef {
        BlobRef(hash: b.text(), size: b.u64(), holders: (0..<b.count(2)).map { _ in b.element(nodes) ?? NodeID(b.u64()) })
    }

    static func outcome(_ b: inout FuzzBytes) -> AttemptOutcome {
        switch b.pick(7) {
        case 0: .exited(0)
        case 1: .exited(Int32(truncatingIfNeeded: b.int()))
        case 2: .signalled(Int32(truncatingIfNeeded: b.int()))
        case 3: .timedOut
        case 4: .cancelled
        case 5: b.bool() ? .lost(b.text()) : .rejected(b.text())
        default: .failedToStart(b.text())
        }
    }

    static func plan(_ b: inout FuzzBytes, state: ClusterState, jobs: [JobID], nodes: [NodeID]) -> PlanChunk {
        let staging = state.sweeps.values.filter { $0.status == .staging }.map(\.id).sorted()
        var c = PlanChunk()
        c.sweep = b.bool() ? (b.element(staging) ?? 0) : (b.bool() ? 0 : b.u64())
        c.name = b.text()
        c.total = b.bool() ? 1 + b.pick(4) : b.int()
        c.reuse = b.bool()
        c.at = b.i64()
        c.final = b.bool()
        c.resume = b.pick(4) == 0
        var identities: [String] = []
        for _ in 0..<b.count(4) {
            let id = b.bool() ? "id\(b.pick(6))" : b.text()
            var p = PlannedJob(spec: spec(&b, jobs: jobs, nodes: nodes), identity: id, combination: b.bool() ? b.pick(3) : b.int())
            if b.bool(), let d = b.element(identities) { p.dependsOn = [d] }
            p.spec.stage = b.bool() ? "s\(b.pick(2))" : b.text()
            identities.append(id)
            c.jobs.append(p)
        }
        return c
    }
}
