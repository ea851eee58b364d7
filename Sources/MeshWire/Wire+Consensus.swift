import MeshCore
import SwiftProtobuf

/// Raft packets, log entries, snapshots and the cluster state, on the wire and on disk.
extension Wire {
    // MARK: Encoding

    public static func encode(_ packet: Consensus.Packet) -> [UInt8] { encode(.raft(wire(packet))) }

    public static func wire(_ p: Consensus.Packet) -> WireRaftPacket {
        var w = WireRaftPacket()
        w.from = p.from.rawValue
        w.to = p.to.rawValue
        w.term = p.term
        w.clock = p.clock.nanoseconds
        w.echo = p.echo.nanoseconds
        switch p.message {
        case .preVote(let li, let lt): w.message = .preVote(.with { $0.lastIndex = li; $0.lastTerm = lt })
        case .preVoteResponse(let g): w.message = .preVoteResponse(.with { $0.granted = g })
        case .vote(let li, let lt, let t): w.message = .vote(.with { $0.lastIndex = li; $0.lastTerm = lt; $0.transfer = t })
        case .voteResponse(let g): w.message = .voteResponse(.with { $0.granted = g })
        case .append(let pi, let pt, let entries, let commit):
            w.message = .append(.with { $0.prevIndex = pi; $0.prevTerm = pt; $0.entries = entries.map(wire); $0.commit = commit })
        case .appendResponse(let r):
            w.message = .appendResponse(.with { $0.success = r.success; $0.index = r.index; $0.hintTerm = r.hintTerm })
        case .snapshot(let s): w.message = .snapshot(wire(s))
        case .snapshotResponse(let m): w.message = .snapshotResponse(m)
        case .timeoutNow: w.message = .timeoutNow(WireRaftNoop())
        }
        return w
    }

    public static func wire(_ e: Consensus.Entry) -> WireLogEntry {
        var w = WireLogEntry()
        w.index = e.index
        w.term = e.term
        switch e.payload {
        case .noop: w.payload = .noop(WireRaftNoop())
        case .configuration(let c): w.payload = .configuration(wire(c))
        case .command(let r): w.payload = .command(wire(r))
        }
        return w
    }

    public static func wire(_ c: Consensus.Configuration) -> WireRaftConfiguration {
        var w = WireRaftConfiguration()
        w.voters = c.voters.sorted().map(\.rawValue)
        w.learners = c.learners.sorted().map(\.rawValue)
        return w
    }

    public static func wire(_ s: Consensus.Snapshot) -> WireRaftSnapshot {
        var w = WireRaftSnapshot()
        w.index = s.index
        w.term = s.term
        w.configuration = wire(s.configuration)
        w.data = Data(s.data)
        return w
    }

    public static func wire(_ r: ClusterState.Request) -> WireClusterRequest {
        var w = WireClusterRequest()
        w.client = r.client.rawValue
        w.sequence = r.sequence
        switch r.command {
        case .register(let id, let name, let address, let capacity):
            w.command = .register(.with { $0.node = id.rawValue; $0.name = name; $0.address = address; $0.capacity = wire(capacity) })
        case .unregister(let id): w.command = .unregister(id.rawValue)
        case .cordon(let name, let reason): w.command = .cordon(.with { $0.name = name; $0.reason = reason })
        case .uncordon(let name): w.command = .uncordon(name)
        case .drain(let name, let deadline, let leaving): w.command = .drain(.with { $0.name = name; $0.deadlineMs = deadline; $0.leaving = leaving })
        case .requeue(let ids, let reason, let at): w.command = .requeue(jobsChange(ids, reason: reason, at: at))
        case .setSetting(let k, let v): w.command = .setSetting(.with { $0.key = k; $0.value = v })
        case .submit(let spec, let provenance, let at, let via):
            w.command = .submit(.with { $0.spec = wire(spec); $0.provenance = wire(provenance); $0.at = at; $0.via = via.rawValue })
        case .assign(let assignments): w.command = .assign(.with { $0.assignments = assignments.map(wire) })
        case .started(let job, let attempt, let node, let at):
            w.command = .started(.with { $0.job = job; $0.attempt = UInt32(clamping: attempt); $0.node = node.rawValue; $0.at = at })
        case .finished(let r): w.command = .finished(wire(r))
        case .lost(let job, let attempt, let reason, let at):
            w.command = .lost(.with { $0.job = job; $0.attempt = UInt32(clamping: attempt); $0.reason = reason; $0.at = at })
        case .cancel(let ids, let reason, let at): w.command = .cancel(jobsChange(ids, reason: reason, at: at))
        case .retry(let ids, let at): w.command = .retry(jobsChange(ids, at: at))
        case .hold(let ids, let at): w.command = .hold(jobsChange(ids, at: at))
        case .release(let ids, let at): w.command = .release(jobsChange(ids, at: at))
        case .plan(let chunk): w.command = .plan(wire(chunk))
        case .stored(let job, let attempt, let node):
            w.command = .stored(.with { $0.job = job; $0.attempt = UInt32(clamping: attempt); $0.node = node.rawValue })
        }
        return w
    }

    public static func wire(_ o: ClusterState.Outcome) -> WireOutcome {
        var w = WireOutcome()
        switch o {
        case .done(let m):
            w.done = true
            w.message = m
        case .created(let ids, let m):
            w.done = true
            w.message = m
            w.created = ids
        case .rejected(let m):
            w.done = false
            w.message = m
        }
        return w
    }

    public static func wire(_ n: ClusterState.Node) -> WireNodeRecord {
        var w = WireNodeRecord()
        w.id = n.id.rawValue
        w.name = n.name
        w.address = n.address
        w.cordoned = n.cordoned
        w.cordonReason = n.cordonReason
        w.registeredAt = n.registeredAt
        w.capacity = wire(n.capacity)
        w.draining = n.draining
        w.drainDeadlineMs = n.drainDeadlineMillis
        w.drainIndex = n.drainIndex
        w.leaving = n.leaving
        w.quarantined = n.quarantined
        w.failStreak = UInt32(clamping: n.failStreak)
        w.quarantinedIndex = n.quarantinedIndex
        return w
    }

    /// The cluster state as snapshot data: deterministic (sorted) so equal states encode equally.
    public static func encode(_ state: ClusterState) -> [UInt8] {
        var w = WireClusterStateSnapshot()
        w.nodes = state.nodes.values.sorted { $0.id < $1.id }.map(wire)
        w.sessions = state.sessions.sorted { $0.key < $1.key }.map { id, s in
            var r = WireSessionRecord()
            r.client = id.rawValue
            r.lastSequence = s.lastSequence
            r.lastOutcome = wire(s.lastOutcome)
            r.lastIndex = s.lastIndex
            return r
        }
        w.settings = state.settings
        w.appliedIndex = state.appliedIndex
        w.jobs = state.jobList.map(wire)
        w.nextJobID = state.nextJobID
        w.sweeps = state.sweepList.map { wire($0) }
        w.nextSweepID = state.nextSweepID
        var options = BinaryEncodingOptions()
        options.useDeterministicOrdering = true
        return try! w.serializedBytes(options: options)
    }

    public static func encode(_ entry: Consensus.Entry) -> [UInt8] { try! wire(entry).serializedBytes() }
    public static func encode(_ c: Consensus.Configuration) -> [UInt8] { try! wire(c).serializedBytes() }

    // MARK: Decoding

    public static func packet(_ w: WireRaftPacket) throws(WireError) -> Consensus.Packet {
        guard w.from != 0, w.to != 0 else { throw .malformed("raft packet without sender or receiver") }
        let m: Consensus.Message
        switch w.message {
        case .preVote(let v)?: m = .preVote(lastIndex: v.lastIndex, lastTerm: v.lastTerm)
        case .preVoteResponse(let r)?: m = .preVoteResponse(granted: r.granted)
        case .vote(let v)?: m = .vote(lastIndex: v.lastIndex, lastTerm: v.lastTerm, transfer: v.transfer)
        case .voteResponse(let r)?: m = .voteResponse(granted: r.granted)
        case .append(let a)?:
            var entries: [Consensus.Entry] = []
            entries.reserveCapacity(a.entries.count)
            for e in a.entries { entries.append(try entry(e)) }
            m = .append(prevIndex: a.prevIndex, prevTerm: a.prevTerm, entries: entries, commit: a.commit)
        case .appendResponse(let r)?: m = .appendResponse(.init(success: r.success, index: r.index, hintTerm: r.hintTerm))
        case .snapshot(let s)?: m = .snapshot(try snapshot(s))
        case .snapshotResponse(let i)?: m = .snapshotResponse(matchIndex: i)
        case .timeoutNow?: m = .timeoutNow
        case nil: throw .malformed("raft packet without a message")
        }
        return Consensus.Packet(from: NodeID(w.from), to: NodeID(w.to), term: w.term, message: m,
                                clock: Instant(nanoseconds: w.clock), echo: Instant(nanoseconds: w.echo))
    }

    public static func entry(_ w: WireLogEntry) throws(WireError) -> Consensus.Entry {
        let payload: Consensus.Payload
        switch w.payload {
        case .noop?: payload = .noop
        case .configuration(let c)?: payload = .configuration(configuration(c))
        case .command(let r)?: payload = .command(try request(r))
        case nil: throw .malformed("log entry \(w.index) without a payload")
        }
        return Consensus.Entry(index: w.index, term: w.term, payload: payload)
    }

    public static func entry(bytes: [UInt8]) throws(WireError) -> Consensus.Entry {
        do {
            return try entry(try WireLogEntry(serializedBytes: bytes))
        } catch let e as WireError {
            throw e
        } catch {
            throw .malformed("log entry: \(error)")
        }
    }

    public static func configuration(_ w: WireRaftConfiguration) -> Consensus.Configuration {
        Consensus.Configuration(voters: Set(w.voters.map(NodeID.init)), learners: Set(w.learners.map(NodeID.init)))
    }

    public static func configuration(bytes: [UInt8]) throws(WireError) -> Consensus.Configuration {
        guard let w = try? WireRaftConfiguration(serializedBytes: bytes) else { throw .malformed("configuration") }
        return configuration(w)
    }

    public static func snapshot(_ w: WireRaftSnapshot) throws(WireError) -> Consensus.Snapshot {
        Consensus.Snapshot(index: w.index, term: w.term, configuration: configuration(w.configuration), data: [UInt8](w.data))
    }

    public static func request(_ w: WireClusterRequest) throws(WireError) -> ClusterState.Request {
        let c: ClusterState.Command
        switch w.command {
        case .register(let r)?:
            guard r.node != 0, !r.name.isEmpty else { throw .malformed("register without a node or name") }
            c = .register(NodeID(r.node), name: r.name, address: r.address, capacity: capacity(r.capacity))
        case .unregister(let id)?: c = .unregister(NodeID(id))
        case .cordon(let r)?: c = .cordon(name: r.name, reason: r.reason)
        case .uncordon(let name)?: c = .uncordon(name: name)
        case .drain(let r)?: c = .drain(name: r.name, deadlineMillis: r.deadlineMs, leaving: r.leaving)
        case .requeue(let r)?: c = .requeue(r.jobs, reason: r.reason, at: r.at)
        case .setSetting(let s)?: c = .setSetting(key: s.key, value: s.value)
        case .submit(let j)?: c = .submit(try spec(j.spec), try provenance(j.provenance), at: j.at, via: NodeID(j.via))
        case .assign(let a)?:
            guard a.assignments.count <= 100_000 else { throw .malformed("too many assignments") }
            c = .assign(a.assignments.map(assignment))
        case .started(let r)?: c = .started(job: r.job, attempt: Int(r.attempt), node: NodeID(r.node), at: r.at)
        case .finished(let r)?: c = .finished(try report(r))
        case .lost(let r)?: c = .lost(job: r.job, attempt: Int(r.attempt), reason: r.reason, at: r.at)
        case .cancel(let r)?: c = .cancel(r.jobs, reason: r.reason, at: r.at)
        case .retry(let r)?: c = .retry(r.jobs, at: r.at)
        case .plan(let p)?: c = .plan(try planChunk(p))
        case .hold(let r)?: c = .hold(r.jobs, at: r.at)
        case .release(let r)?: c = .release(r.jobs, at: r.at)
        case .stored(let r)?: c = .stored(job: r.job, attempt: Int(r.attempt), node: NodeID(r.node))
        case nil: throw .malformed("request without a command")
        }
        return ClusterState.Request(client: .init(w.client), sequence: w.sequence, command: c)
    }

    public static func outcome(_ w: WireOutcome) -> ClusterState.Outcome {
        if !w.done { return .rejected(w.message) }
        return w.created.isEmpty ? .done(w.message) : .created(w.created, w.message)
    }

    public static func clusterState(_ bytes: [UInt8]) throws(WireError) -> ClusterState {
        guard let w = try? WireClusterStateSnapshot(serializedBytes: bytes) else { throw .malformed("cluster state snapshot") }
        var nodes: [NodeID: ClusterState.Node] = [:]
        for n in w.nodes {
            nodes[NodeID(n.id)] = ClusterState.Node(
                id: NodeID(n.id), name: n.name, address: n.address, cordoned: n.cordoned,
                cordonReason: n.cordonReason, registeredAt: n.registeredAt, capacity: capacity(n.capacity),
                draining: n.draining, drainDeadlineMillis: n.drainDeadlineMs, drainIndex: n.drainIndex, leaving: n.leaving, quarantined: n.quarantined, failStreak: Int(n.failStreak),
                quarantinedIndex: n.quarantinedIndex)
        }
        var jobs: [JobID: Job] = [:]
        for j in w.jobs {
            do {
                jobs[j.id] = try job(j)
            } catch {
                throw .malformed("cluster state snapshot: \(error)")
            }
        }
        var sweeps: [SweepID: Sweep] = [:]
        for s in w.sweeps {
            do {
                sweeps[s.id] = try sweep(s)
            } catch {
                throw .malformed("cluster state snapshot: \(error)")
            }
        }
        var sessions: [ClusterState.ClientID: ClusterState.Session] = [:]
        for s in w.sessions {
            sessions[.init(s.client)] = ClusterState.Session(lastSequence: s.lastSequence, lastOutcome: outcome(s.lastOutcome), lastIndex: s.lastIndex)
        }
        return ClusterState(nodes: nodes, sessions: sessions, settings: w.settings, appliedIndex: w.appliedIndex,
                            jobs: jobs, nextJobID: w.nextJobID, sweeps: sweeps, nextSweepID: max(w.nextSweepID, 1))
    }
}

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
