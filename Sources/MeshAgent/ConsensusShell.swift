import Dispatch
import Logging
import MeshCore
import MeshTransport
import MeshWire

/// Where an answer goes: back along the ROUTER connection a message came in on, or on our DEALER
/// to the peer it came from.
enum ReplyPath {
    case route(Route)
    case dealer(PeerID)
    /// A part of this agent (a worker's report).
    case local((WireEnvelope, TransportLoop) -> Void)

    func send(_ envelope: WireEnvelope, loop: TransportLoop) {
        switch self {
        case .route(let r): loop.reply(to: r, [Wire.encodeReply(envelope)])
        case .dealer(let p): loop.send(to: p, [Wire.encodeReply(envelope)])
        case .local(let f): f(envelope, loop)
        }
    }
}

/// How the agent runs the coordinator.
public struct CoordinatorSettings: Sendable {
    public var raft = Consensus.Settings()
    /// Voters wanted (odd, at most this many), unless the mesh setting `max_voters` says otherwise.
    public var maxVoters = 5
    /// A voter that gossip has had dead this long is replaced (mesh setting `voter_grace_seconds`).
    public var deadVoterGrace: Duration = .seconds(30)
    /// How long a write waits for a coordinator before the client is told to retry later.
    public var writeWait: Duration = .seconds(5)
    /// Entries applied between snapshots.
    public var snapshotEvery: Consensus.Index = 10_000

    public init() {}
}

/// Runs `Consensus.Instance` and the `ClusterState` it drives on the I/O thread: persists before
/// it sends, applies what is committed, answers writes once they are applied, forwards writes and
/// status reads to the coordinator, keeps its own connection to the coordinator so that its death
/// is noticed at once, and (as coordinator) picks the voters from the gossip view.
final class ConsensusShell {
    private(set) var instance: Consensus.Instance
    private(set) var state: ClusterState
    private let store: RaftStore
    private let settings: CoordinatorSettings
    private unowned let membership: MembershipShell
    private let node: Box<WireNodeInfo>
    private let logger: Logger
    private let requestStop: @Sendable () -> Void
    private let origin: ContinuousClock.Instant
    /// `origin` on the boot clock: Raft's instants are boot-clock times.
    private let bootOrigin: Instant
    private var timer: TimerID?
    private var failed = false
    private var limiter = LogLimiter()
    /// Runs work on the I/O thread again, from another thread.
    private let post: @Sendable (@escaping @Sendable (TransportLoop) -> Void) -> Void
    /// A snapshot is being encoded on `background`.
    private var snapshotting = false
    private let background = DispatchQueue(label: "mesh.snapshot")

    /// Proposals of ours waiting to be applied, by log index.
    private var waiting: [Consensus.Index: [Waiting]] = [:]
    /// Client requests proposed by this coordinator and not yet applied, by client.
    private var inFlight: [ClusterState.ClientID: (sequence: UInt64, index: Consensus.Index, term: Consensus.Term)] = [:]
    /// Writes we passed to the coordinator (or hold until there is one), by our request id.
    private var forwards: [UInt64: Forward] = [:]
    private var statusForwards: [UInt64: (path: ReplyPath, requestID: UInt64, deadline: ContinuousClock.Instant, query: StatusQuery)] = [:]
    /// Above the ids the agent's own peer pings use, so that replies never mix.
    private var nextRequestID: UInt64 = 1 << 40
    private var retryTimer: TimerID?
    /// When gossip first reported each dead member.
    private var deadSince: [NodeID: ContinuousClock.Instant] = [:]
    /// The coordinator's own client id and sequence for the writes it makes (registering nodes).
    private var managerClient = ClusterState.ClientID(0)
    private var managerSequence: UInt64 = 0
    /// Called after committed entries (or a snapshot) changed the state.
    var onApplied: ((TransportLoop) -> Void)?

    struct Waiting {
        var path: ReplyPath
        var requestID: UInt64
        var term: Consensus.Term
        var since: ContinuousClock.Instant
    }

    struct Forward {
        var path: ReplyPath
        var clientRequestID: UInt64
        var request: ClusterState.Request
        var deadline: ContinuousClock.Instant
        /// Sent to this coordinator and not answered yet (nil: waiting for one).
        var sentTo: NodeID?
        var sentAt: ContinuousClock.Instant?
    }

    /// Addresses of the nodes this agent's own log and snapshot have registered: after a restart,
    /// the agent rejoins through them even without `--join`.
    private(set) var knownAddresses: [String] = []

    init(
        id: NodeID, store: RaftStore, settings: CoordinatorSettings, membership: MembershipShell, node: Box<WireNodeInfo>,
        logger: Logger, requestStop: @escaping @Sendable () -> Void, loop: TransportLoop,
        post: @escaping @Sendable (@escaping @Sendable (TransportLoop) -> Void) -> Void = { _ in }
    ) throws(StoreError) {
        let stored = try store.load() ?? Consensus.Stored()
        var state = ClusterState()
        if let s = stored.snapshot {
            do {
                state = try Wire.clusterState(s.data)
            } catch {
                throw .corrupt(store.path, "its snapshot cannot be read: \(error)")
            }
        }
        self.state = state
        self.store = store
        self.settings = settings
        self.membership = membership
        self.node = node
        self.logger = logger
        self.requestStop = requestStop
        self.post = post
        origin = loop.now
        bootOrigin = BootClock.now()
        instance = Consensus.Instance(id: id, stored: stored, settings: settings.raft, seed: UInt64.random(in: .min ... .max), now: bootOrigin)
        var addresses: [NodeID: String] = state.nodes.mapValues(\.address)
        for e in stored.entries {
            if case .command(let r) = e.payload, case .register(let node, _, let address, _) = r.command { addresses[node] = address }
        }
        addresses[id] = nil
        knownAddresses = addresses.values.sorted()
        if stored.hardState.term == 0 && stored.entries.isEmpty && stored.snapshot == nil {
            // A new node: record that the store exists, so a restart never takes it for a fresh one.
            try store.persist(stored.hardState, entries: [], truncateAfter: nil)
        }
    }

    func now(_ loop: TransportLoop) -> Instant { bootOrigin + (loop.now - origin) }

    func start(loop: TransportLoop) {
        carryOut(instance.start(now: now(loop)), loop: loop)
        scheduleManagement(loop)
    }

    // MARK: Raft traffic

    func received(_ packet: Consensus.Packet, loop: TransportLoop) {
        guard !failed else { return }
        carryOut(instance.onPacket(packet, now: now(loop)), loop: loop)
    }

    /// Our DEALER to `address` dropped: if that is the coordinator, campaign soon.
    func connectionLost(to address: String, loop: TransportLoop) {
        guard let leader = instance.leader, leader != instance.id,
              membership.instance.member(leader)?.meta.address == address else { return }
        logger.info("lost the connection to the coordinator", metadata: ["address": "\(address)"])
        carryOut(instance.onLeaderUnreachable(now: now(loop)), loop: loop)
    }

    private func carryOut(_ directives: [Consensus.Directive], loop: TransportLoop) {
        for d in directives {
            guard !failed else { return }
            switch d {
            case .persist(let hs, let entries, let cut):
                do {
                    try store.persist(hs, entries: entries, truncateAfter: cut)
                } catch {
                    stopOnStorageFailure(error)
                }
            case .persistSnapshot(let s, let discardLog):
                do {
                    try store.persistSnapshot(s, discardLog: discardLog)
                } catch {
                    stopOnStorageFailure(error)
                }
            case .send(let p):
                guard let address = membership.instance.member(p.to)?.meta.address else { continue }
                membership.peerLinks.send([Wire.encode(p)], to: p.to, address: address, loop: loop)
            case .apply(let entries):
                for e in entries { apply(e, loop: loop) }
                maybeSnapshot(loop)
                onApplied?(loop)
            case .restore(let s):
                do {
                    state = try Wire.clusterState(s.data)
                } catch {
                    logger.error("the coordinator sent a snapshot we cannot read: \(error)")
                }
                for (index, ws) in waiting where index <= s.index {
                    for w in ws { retryLater(w.path, w.requestID, "the coordinator changed; try again", loop: loop) }
                    waiting[index] = nil
                }
                onApplied?(loop)
            case .scheduleTick(let at):
                if let t = timer { loop.cancel(t) }
                timer = loop.schedule(after: max(.zero, at - now(loop))) { [weak self] loop in
                    guard let self else { return }
                    self.timer = nil
                    self.carryOut(self.instance.onTick(now: self.now(loop)), loop: loop)
                }
            case .roleChanged(let role, let term, let leader):
                roleChanged(role, term: term, leader: leader, loop: loop)
            case .dropped(let p, let why):
                let who = membership.instance.member(p.from)?.meta.name ?? "\(p.from)"
                limiter.warning(logger, key: "dropped:\(p.from)", now: loop.now, "dropped a raft message from \(who): \(why)")
            }
        }
    }

    /// Raft assumed the write was durable; it is not. Going on could break the log's guarantees.
    private func stopOnStorageFailure(_ error: StoreError) {
        failed = true
        logger.critical("stopping: \(error)")
        requestStop()
    }

    private func roleChanged(_ role: Consensus.Role, term: Consensus.Term, leader: NodeID?, loop: TransportLoop) {
        let name = leader.flatMap { membership.instance.member($0)?.meta.name } ?? leader.map { "\($0)" } ?? "none"
        if role == .leader {
            logger.info("coordinator: this node", metadata: ["term": "\(term)", "voters": "\(instance.configuration.voters.count)"])
            managerClient = ClusterState.ClientID(instance.id.rawValue ^ term.multipliedReportingOverflow(by: 0x9E37_79B9_7F4A_7C15).partialValue)
            managerSequence = 0
            manage(loop)
        } else {
            logger.info("\(role.rawValue)", metadata: ["term": "\(term)", "coordinator": "\(name)"])
        }
        // Our own connection to the coordinator, whose drop tells us at once that it died.
        if let leader, leader != instance.id, let address = membership.instance.member(leader)?.meta.address {
            membership.peerLinks.ensureConnection(to: address, node: leader, loop: loop)
        }
        if leader != nil { retryForwards(loop) }
    }

    // MARK: Applying

    private func apply(_ e: Consensus.Entry, loop: TransportLoop) {
        var outcome: ClusterState.Outcome?
        switch e.payload {
        case .command(let r):
            outcome = state.apply(r, at: e.index)
            // Publish our own cordon state in gossip too, so every view of us agrees.
            if let me = state.nodes[instance.id], me.cordoned != membership.instance.meta.cordoned {
                var meta = membership.instance.meta
                meta.cordoned = me.cordoned
                membership.updateMeta(meta, loop: loop)
            }
        case .noop:
            state.advance(to: e.index)
        case .configuration:
            state.advance(to: e.index)
            // One configuration change at a time: take the next step as soon as this one is in.
            if instance.role == .leader {
                loop.schedule(after: .milliseconds(20)) { [weak self] loop in self?.manage(loop) }
            }
        }
        if let ws = waiting.removeValue(forKey: e.index) {
            for w in ws {
                if w.term == e.term, let outcome {
                    var reply = WireWriteReply()
                    reply.outcome = Wire.wire(outcome)
                    reply.index = e.index
                    w.path.send(Wire.envelope(.writeReply(reply), requestID: w.requestID), loop: loop)
                } else {
                    retryLater(w.path, w.requestID, "the coordinator changed before the write was decided; try again", loop: loop)
                }
            }
        }
    }

    /// Every `snapshotEvery` entries the state is encoded off the I/O thread (a copy: the state is
    /// a value), and the log compacted up to it once that is done. Encoding a state of tens of
    /// thousands of jobs took the I/O thread for long enough that members were suspected and the
    /// leadership moved.
    private func maybeSnapshot(_ loop: TransportLoop) {
        let base = instance.snapshot?.index ?? 0
        guard !snapshotting, instance.appliedIndex >= base + settings.snapshotEvery, state.appliedIndex == instance.appliedIndex else { return }
        snapshotting = true
        let copy = state, index = instance.appliedIndex
        background.async { [post] in
            let data = Wire.encode(copy)
            post { loop in (loop.handler as? AgentHandler)?.consensus?.snapshotEncoded(index: index, data: data, loop: loop) }
        }
    }

    private func snapshotEncoded(index: Consensus.Index, data: [UInt8], loop: TransportLoop) {
        snapshotting = false
        guard !failed else { return }
        // (A no-op if a snapshot from the coordinator replaced the log up to there meanwhile.)
        carryOut(instance.compact(upTo: index, data: data, now: now(loop)), loop: loop)
        logger.debug("snapshot taken", metadata: ["index": "\(index)", "bytes": "\(data.count)"])
    }

    // MARK: Writes

    /// The coordinator's own write (scheduling, loss): proposed without anyone waiting for it.
    func propose(_ request: ClusterState.Request, loop: TransportLoop) -> Consensus.Index? {
        guard instance.role == .leader, !failed, case .success(let (index, d)) = instance.propose(request, now: now(loop)) else { return nil }
        carryOut(d, loop: loop)
        return index
    }

    /// A write from a client or a forwarding agent: proposed here if we are the coordinator,
    /// passed on to it otherwise, held (up to `writeWait`) while there is none.
    func write(_ request: ClusterState.Request, path: ReplyPath, requestID: UInt64, forwarded: Bool, loop: TransportLoop) {
        guard !failed else {
            retryLater(path, requestID, "this agent is stopping", loop: loop)
            return
        }
        // Out of bounds, or too big for one entry: refused now, with the reason (the state
        // machine would refuse it too, but only after it had taken a place in every log).
        if let problem = Self.refusal(request) {
            path.send(Wire.error(.badRequest, problem, requestID: requestID), loop: loop)
            return
        }
        if instance.role == .leader {
            // The same request again (a forwarding agent resends after a second without an answer;
            // a client retries) while the first is still in the log uncommitted: wait for that
            // entry rather than append another copy (a big plan chunk resent every second under
            // load would otherwise pile up copies faster than they commit).
            if let p = inFlight[request.client], p.sequence == request.sequence, p.term == instance.term, p.index > instance.appliedIndex {
                waiting[p.index, default: []].append(Waiting(path: path, requestID: requestID, term: instance.term, since: loop.now))
                return
            }
            switch instance.propose(request, now: now(loop)) {
            case .success(let (index, directives)):
                waiting[index, default: []].append(Waiting(path: path, requestID: requestID, term: instance.term, since: loop.now))
                inFlight[request.client] = (request.sequence, index, instance.term)
                if inFlight.count > 10_000 { inFlight = inFlight.filter { $0.value.index > instance.appliedIndex } }
                carryOut(directives, loop: loop)
                return
            case .failure:
                break
            }
        }
        if forwarded {
            // Not (or no longer) the coordinator: the forwarding agent will find the right one.
            retryLater(path, requestID, "not the coordinator", loop: loop)
            return
        }
        let id = nextRequestID
        nextRequestID += 1
        forwards[id] = Forward(path: path, clientRequestID: requestID, request: request, deadline: loop.now + settings.writeWait)
        send(forward: id, loop: loop)
    }

    private func send(forward id: UInt64, loop: TransportLoop) {
        guard var f = forwards[id] else { return }
        if instance.role == .leader {
            // We lead but could not propose it (handing over coordination): try again shortly,
            // within the write's deadline. (Calling `write` here would forward it to ourselves
            // again at once, without end.)
            if case .success(let (index, directives)) = instance.propose(f.request, now: now(loop)) {
                forwards[id] = nil
                waiting[index, default: []].append(Waiting(path: f.path, requestID: f.clientRequestID, term: instance.term, since: loop.now))
                inFlight[f.request.client] = (f.request.sequence, index, instance.term)
                carryOut(directives, loop: loop)
                return
            }
            f.sentTo = nil
            forwards[id] = f
            scheduleRetries(loop)
            return
        }
        if let leader = instance.leader, let address = membership.instance.member(leader)?.meta.address {
            var fw = WireForwardedWrite()
            fw.request = Wire.wire(f.request)
            membership.peerLinks.send([Wire.encode(.forwardedWrite(fw), requestID: id)], to: leader, address: address, loop: loop)
            f.sentTo = leader
            f.sentAt = loop.now
        } else {
            f.sentTo = nil
        }
        forwards[id] = f
        scheduleRetries(loop)
    }

    /// The largest log entry a write may make: an append carries at least one whole entry, and
    /// must stay under the frame limit with room to spare.
    static let maxEntryBytes = 8 << 20

    /// Why a request cannot be proposed, or nil.
    static func refusal(_ request: ClusterState.Request) -> String? {
        if let problem = ClusterState.problem(request.command) { return problem }
        // (An estimate first: encoding a big plan chunk twice would cost the I/O thread.)
        guard request.command.approximateSize > maxEntryBytes / 4 else { return nil }
        let size = Wire.encode(Consensus.Entry(index: 1, term: 1, payload: .command(request))).count
        return size > maxEntryBytes ? "the request is \(size >> 10) KiB, over the \(maxEntryBytes >> 20) MiB limit of one log entry" : nil
    }

    /// The coordinator answered a write we forwarded.
    func forwardedReply(_ envelope: WireEnvelope, loop: TransportLoop) {
        guard let f = forwards[envelope.requestID] else { return }
        switch envelope.body {
        case .writeReply(let r):
            forwards[envelope.requestID] = nil
            f.path.send(Wire.envelope(.writeReply(r), requestID: f.clientRequestID), loop: loop)
        case .error:
            // Not the coordinator any more, or changed mid-way: try again shortly.
            forwards[envelope.requestID]?.sentTo = nil
            scheduleRetries(loop)
        default:
            break
        }
    }

    private func retryForwards(_ loop: TransportLoop) {
        for (id, f) in forwards where f.sentTo == nil || f.sentTo != instance.leader { send(forward: id, loop: loop) }
    }

    private func scheduleRetries(_ loop: TransportLoop) {
        guard retryTimer == nil else { return }
        retryTimer = loop.schedule(after: .milliseconds(100)) { [weak self] loop in
            guard let self else { return }
            self.retryTimer = nil
            let now = loop.now
            for (id, f) in self.forwards {
                if now >= f.deadline {
                    self.forwards[id] = nil
                    let why = self.instance.leader == nil
                        ? "no coordinator was elected within \(self.settings.writeWait) (too few voters reachable?)"
                        : "the coordinator did not answer within \(self.settings.writeWait)"
                    self.retryLater(f.path, f.clientRequestID, why, loop: loop)
                } else if f.sentTo == nil || (f.sentAt.map { now - $0 > .seconds(1) } ?? true) {
                    self.send(forward: id, loop: loop)
                }
            }
            for (id, s) in self.statusForwards where now >= s.deadline {
                self.statusForwards[id] = nil
                s.path.send(Wire.envelope(.statusReply(self.statusReply(loop: loop, query: s.query)), requestID: s.requestID), loop: loop)
            }
            if !self.forwards.isEmpty || !self.statusForwards.isEmpty { self.scheduleRetries(loop) }
        }
    }

    private func retryLater(_ path: ReplyPath, _ requestID: UInt64, _ why: String, loop: TransportLoop) {
        path.send(Wire.error(.retryLater, why, requestID: requestID), loop: loop)
    }

    // MARK: Status

    /// A status read: the coordinator's view unless `local` (or there is no coordinator, or we are it).
    func status(local: Bool, query: StatusQuery = StatusQuery(), path: ReplyPath, requestID: UInt64, loop: TransportLoop) {
        if local || instance.role == .leader || instance.leader == nil {
            path.send(Wire.envelope(.statusReply(statusReply(loop: loop, query: query)), requestID: requestID), loop: loop)
            return
        }
        let leader = instance.leader!
        guard let address = membership.instance.member(leader)?.meta.address else {
            path.send(Wire.envelope(.statusReply(statusReply(loop: loop, query: query)), requestID: requestID), loop: loop)
            return
        }
        let id = nextRequestID
        nextRequestID += 1
        statusForwards[id] = (path, requestID, loop.now + .seconds(2), query)
        var f = WireForwardedStatus()
        f.jobs = query.jobs
        f.jobIds = query.jobIDs
        f.sweeps = query.sweeps
        f.sweepIds = query.sweepIDs
        f.request = query.request
        membership.peerLinks.send([Wire.encode(.forwardedStatus(f), requestID: id)], to: leader, address: address, loop: loop)
        scheduleRetries(loop)
    }

    /// The coordinator answered a status read we forwarded.
    func forwardedStatusReply(_ envelope: WireEnvelope, loop: TransportLoop) {
        guard let s = statusForwards.removeValue(forKey: envelope.requestID), case .statusReply(let r) = envelope.body else { return }
        s.path.send(Wire.envelope(.statusReply(r), requestID: s.requestID), loop: loop)
    }

    func statusReply(loop: TransportLoop, query: StatusQuery = StatusQuery()) -> WireStatusReply {
        var reply = membership.status(node: node.value, loop: loop)
        reply.coordinator = coordinatorStatus()
        reply.nodes = state.nodes.values.sorted { $0.name < $1.name }.map(Wire.wire)
        reply.settings = state.settings
        if query.sweeps {
            reply.sweeps = query.sweepIDs.isEmpty
                ? state.sweepList.map { Wire.wire($0, summary: true, jobs: state.jobs) }
                : query.sweepIDs.compactMap { state.sweeps[$0] }.map { Wire.wire($0) }
        } else if query.jobs {
            if query.jobIDs.isEmpty {
                // A page, newest first: no reply grows with the history.
                let page = state.page(query.page)
                reply.jobs = page.jobs.map(Wire.wire)
                reply.moreJobs = page.more
                reply.nextBefore = page.nextBefore
            } else {
                reply.jobs = query.jobIDs.prefix(ClusterState.JobQuery.defaultLimit).compactMap { state.jobs[$0] }.map(Wire.wire)
            }
        } else {
            // The summary `mesh status` shows: what runs, the first few that wait, and counts.
            reply.jobs = state.summaryJobs().map(Wire.wire)
        }
        for (s, n) in state.stateCounts { reply.jobCounts[s.rawValue] = UInt64(n) }
        return reply
    }

    func coordinatorStatus() -> WireCoordinatorStatus {
        var c = WireCoordinatorStatus()
        c.leader = instance.leader?.rawValue ?? 0
        c.term = instance.term
        c.role = instance.role.rawValue
        c.voters = instance.configuration.voters.sorted().map(\.rawValue)
        c.learners = instance.configuration.learners.sorted().map(\.rawValue)
        c.commitIndex = instance.commitIndex
        c.appliedIndex = instance.appliedIndex
        c.faultTolerance = UInt32(instance.configuration.faultTolerance)
        c.fromLeader = instance.role == .leader
        return c
    }

    // MARK: Leaving

    /// Before a graceful leave: if we coordinate, hand over to the voter whose log is furthest
    /// along, and call `then` once someone else leads (or after a bound).
    /// Leaving as the only voter: the voter management holds still while another member is made
    /// a voter and takes over.
    private var handingOver = false

    func handOverLeadership(loop: TransportLoop, then: @escaping (TransportLoop) -> Void) {
        let config = instance.configuration
        guard instance.role == .leader else { return then(loop) }
        if config.voters == [instance.id] {
            // The only voter: first make a live, caught-up member a voter, or the others could
            // never elect a coordinator again.
            let alive = Set(membership.instance.memberList.filter { $0.state == .alive }.map(\.id))
            let match = instance.matchIndexes
            guard let heir = config.learners.filter({ alive.contains($0) }).max(by: { (match[$0] ?? 0, $1) < (match[$1] ?? 0, $0) }) else {
                return then(loop)
            }
            handingOver = true
            logger.info("the only voter is leaving: making another member a voter first", metadata: ["heir": "\(membership.instance.member(heir)?.meta.name ?? "\(heir)")"])
            let next = Consensus.Configuration(voters: config.voters.union([heir]), learners: config.learners.subtracting([heir]))
            guard case .success(let (index, d)) = instance.proposeConfiguration(next, now: now(loop)) else {
                handingOver = false
                return then(loop)
            }
            carryOut(d, loop: loop)
            poll(loop, until: loop.now + .seconds(3), { [weak self] in (self?.instance.commitIndex ?? .max) >= index }) { [weak self] loop in
                guard let self else { return then(loop) }
                self.handOverLeadership(loop: loop) { [weak self] loop in
                    self?.handingOver = false
                    then(loop)
                }
            }
            return
        }
        guard config.voters.count > 1 else { return then(loop) }
        let target = config.voters.filter { $0 != instance.id }
            .max { (instance.matchIndexes[$0] ?? 0, $1) < (instance.matchIndexes[$1] ?? 0, $0) }!
        logger.info("handing over coordination before leaving", metadata: ["to": "\(membership.instance.member(target)?.meta.name ?? "\(target)")"])
        carryOut(instance.transferLeadership(to: target, now: now(loop)), loop: loop)
        poll(loop, until: loop.now + .seconds(2), { [weak self] in self?.instance.role != .leader }, then: then)
    }

    /// After announcing the leave: wait until the coordinator has taken away our vote (or a bound).
    func waitForVoteRemoval(loop: TransportLoop, then: @escaping (TransportLoop) -> Void) {
        guard instance.configuration.voters.contains(instance.id), instance.configuration.voters.count > 1 else { return then(loop) }
        poll(loop, until: loop.now + .seconds(3), { [weak self] in
            guard let self else { return true }
            return !self.instance.configuration.voters.contains(self.instance.id)
        }, then: then)
    }

    private func poll(_ loop: TransportLoop, until deadline: ContinuousClock.Instant, _ done: @escaping () -> Bool, then: @escaping (TransportLoop) -> Void) {
        if done() || loop.now >= deadline { return then(loop) }
        loop.schedule(after: .milliseconds(20)) { [weak self] loop in
            self?.poll(loop, until: deadline, done, then: then)
        }
    }

    // MARK: Voters (the coordinator's job)

    func memberChanged(_ m: Membership.Member, loop: TransportLoop) {
        switch m.state {
        case .dead: if deadSince[m.id] == nil { deadSince[m.id] = loop.now }
        default: deadSince[m.id] = nil
        }
        if instance.role == .leader, m.state == .left || m.state == .alive { manage(loop) }
    }

    private func scheduleManagement(_ loop: TransportLoop) {
        loop.schedule(after: .seconds(1)) { [weak self] loop in
            guard let self else { return }
            self.manage(loop)
            self.scheduleManagement(loop)
        }
    }

    /// One step towards the configuration the mesh should have: registered nodes, every live
    /// member a learner, gone members removed, and an odd number of voters (up to `max_voters`)
    /// among the live ones. Raft takes one configuration change at a time.
    private func manage(_ loop: TransportLoop) {
        guard instance.role == .leader, !instance.isTransferring, !handingOver, !failed else { return }
        let now = loop.now
        let members = membership.instance.memberList
        for m in members where m.state == .alive {
            let known = state.nodes[m.id]
            let capacity = ClusterState.Capacity(nodeClass: m.meta.nodeClass, labels: m.meta.labels, slots: m.meta.slots,
                                                 cpus: m.meta.cpus, memoryMB: m.meta.memoryMB, gpus: m.meta.gpus).clamped
            if known == nil || known!.name != m.meta.name || known!.address != m.meta.address || known!.capacity != capacity {
                managerSequence += 1
                let r = ClusterState.Request(client: managerClient, sequence: managerSequence,
                                             command: .register(m.id, name: m.meta.name, address: m.meta.address, capacity: capacity))
                if case .success(let (_, d)) = instance.propose(r, now: self.now(loop)) { carryOut(d, loop: loop) }
            }
        }

        let config = instance.configuration
        let grace = state.duration(.voterGraceSeconds) ?? settings.deadVoterGrace
        let alive = Set(members.filter { $0.state == .alive }.map(\.id))
        let gone = Set(members.filter { m in
            m.id != instance.id && (m.state == .left || (m.state == .dead && deadSince[m.id].map { now - $0 > grace } == true))
        }.map(\.id))
        var next: Consensus.Configuration?
        if let v = config.voters.sorted().first(where: { gone.contains($0) }) {
            next = Consensus.Configuration(voters: config.voters.subtracting([v]), learners: config.learners)
        } else if !config.learners.isDisjoint(with: gone) {
            next = Consensus.Configuration(voters: config.voters, learners: config.learners.subtracting(gone))
        } else if !alive.subtracting(config.members).isEmpty {
            next = Consensus.Configuration(voters: config.voters, learners: config.learners.union(alive.subtracting(config.members)))
        } else {
            // Count every member still in the configuration: one that is dead but within its
            // grace keeps its seat (a reboot must not cost the mesh its fault tolerance).
            let maxVoters = state.setting(.maxVoters) ?? settings.maxVoters
            var target = Swift.max(1, Swift.min(maxVoters, config.members.count))
            if target % 2 == 0 { target -= 1 }
            let match = instance.matchIndexes
            if config.voters.count < target, let promote = config.learners.sorted().first(where: {
                alive.contains($0) && (match[$0] ?? 0) + 16 >= instance.commitIndex
            }) {
                next = Consensus.Configuration(voters: config.voters.union([promote]), learners: config.learners.subtracting([promote]))
            } else if config.voters.count > target, let demote = config.voters.sorted(by: { a, b in
                (alive.contains(a) ? 1 : 0, a) < (alive.contains(b) ? 1 : 0, b)
            }).first(where: { $0 != instance.id }) {
                next = Consensus.Configuration(voters: config.voters.subtracting([demote]), learners: config.learners.union([demote]))
            }
        }
        guard let next, next != config else { return }
        if case .success(let (_, d)) = instance.proposeConfiguration(next, now: self.now(loop)) {
            logger.info("changing the voters", metadata: [
                "voters": "\(next.voters.map { membership.instance.member($0)?.meta.name ?? "\($0)" }.sorted())",
                "learners": "\(next.learners.count)",
            ])
            carryOut(d, loop: loop)
        }
    }
}

/// What a status read asks for besides the mesh itself.
struct StatusQuery {
    var jobs = false
    var jobIDs: [UInt64] = []
    var sweeps = false
    var sweepIDs: [UInt64] = []
    /// The client's request as it came (pages and filters, passed on to the coordinator).
    var request = WireStatusRequest()

    init() {}
    init(_ r: WireStatusRequest) {
        jobs = r.jobs
        jobIDs = r.jobIds
        sweeps = r.sweeps
        sweepIDs = r.sweepIds
        request = r
    }
    init(_ f: WireForwardedStatus) {
        jobs = f.jobs
        jobIDs = f.jobIds
        sweeps = f.sweeps
        sweepIDs = f.sweepIds
        request = f.request
    }

    /// The page of jobs asked for (unknown states are ignored).
    var page: ClusterState.JobQuery {
        ClusterState.JobQuery(limit: Int(request.limit), before: request.before, states: Set(request.states.compactMap(JobState.init(rawValue:))),
                              name: request.name, node: request.node == 0 ? nil : NodeID(request.node), sinceMillis: request.sinceMs)
    }
}
