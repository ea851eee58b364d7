import Logging
import MeshCore
import MeshTransport
import MeshWire

/// Runs `Membership.Instance` on the transport's I/O thread: feeds it packets, ticks and
/// connection drops, and carries out its directives (send, schedule, persist). MeshCore decides;
/// this only acts.
final class MembershipShell {
    /// How joining is going, for `mesh join` and `mesh status`.
    enum JoinProgress: Equatable {
        /// Started without seeds: the first member of its own mesh.
        case founder
        case joining(seeds: [String], lastError: String?)
        case joined
        /// Retrying cannot help: wrong key, name taken, incompatible version.
        case failed(String)
    }

    private(set) var instance: Membership.Instance
    private(set) var join: JoinProgress
    private let links: PeerLinks
    private let dataDirectory: DataDirectory
    private let logger: Logger
    private let origin: ContinuousClock.Instant
    private var timer: TimerID?
    private var sweepTimer: TimerID?
    private var limiter = LogLimiter()
    private(set) var sent: UInt64 = 0
    private(set) var received: UInt64 = 0

    init(
        id: NodeID, meta: Membership.Meta, incarnation: UInt64, settings: Membership.Settings,
        dataDirectory: DataDirectory, logger: Logger, loop: TransportLoop
    ) {
        origin = loop.now
        instance = Membership.Instance(
            id: id, meta: meta, incarnation: incarnation, settings: settings, seed: UInt64.random(in: .min ... .max), now: .zero)
        join = .founder
        links = PeerLinks(logger: logger)
        self.dataDirectory = dataDirectory
        self.logger = logger
    }

    func now(_ loop: TransportLoop) -> Instant { Instant(nanoseconds: (loop.now - origin).nanosecondsClamped) }

    // MARK: Events

    func start(seeds: [String], loop: TransportLoop) {
        carryOut(instance.start(now: now(loop)), loop: loop)
        let others = seeds.filter { $0 != instance.meta.address }
        if !others.isEmpty {
            join = .joining(seeds: others, lastError: nil)
            logger.info("joining the mesh", metadata: ["seeds": "\(others.joined(separator: ","))"])
            carryOut(instance.join(seeds: others, now: now(loop)), loop: loop)
        }
        scheduleSweep(loop)
    }

    func received(_ packet: Membership.Packet, via source: InboundMessage.Source, loop: TransportLoop) {
        switch source {
        case .listener(let route): links.noteRoute(route, for: packet.from)
        case .peer(let peer): links.used(peer, loop: loop)
        }
        received += 1
        carryOut(instance.onPacket(packet, now: now(loop)), loop: loop)
    }

    /// An error reply from a peer (to a gossip message of ours): during a join, from a seed, it
    /// rules that seed out (an agent of another protocol version, for one); the join fails once
    /// every seed has.
    func errorReply(_ error: WireErrorReply, from peer: PeerID, loop: TransportLoop) {
        let address = links.address(of: peer) ?? "\(peer)"
        if case .joining(let seeds, _) = join, seeds.contains(address) {
            seedRefused(address, "\(address) refused our join: \(error.message)", seeds: seeds)
            links.close(address, loop: loop)
        } else {
            limiter.warning(logger, key: "error:\(address)", now: loop.now, "\(address) answered gossip with an error: \(error.message)")
        }
    }

    func connectionEvent(_ peer: PeerID, _ change: ConnectionTracker.Change, loop: TransportLoop) {
        guard let address = links.address(of: peer) else { return }
        switch change {
        case .established:
            links.established(peer, loop: loop)
        case .lost:
            onConnectionLost?(address)
            var directives: [Membership.Directive] = []
            for node in links.nodes(at: address) { directives += instance.onConnectionLost(node, now: now(loop)) }
            carryOut(directives, loop: loop)
        case .handshakeFailed(let failure):
            let why = "\(address) refused the security handshake (\(failure)): it holds another mesh's cluster key, or is not a mesh agent"
            if case .joining(let seeds, _) = join, seeds.contains(address) {
                seedRefused(address, why, seeds: seeds)
            } else {
                limiter.warning(logger, key: "handshake:\(address)", now: loop.now, why)
            }
            links.close(address, loop: loop)
        case .none:
            if case .joining(let seeds, _) = join, seeds.contains(address),
               let d = loop.diagnosis(peer), d == .refused || d == .noConnection {
                join = .joining(seeds: seeds, lastError: "\(address): \(d)")
            }
        }
    }

    /// One seed of a join refused it: the join goes on through the others, and fails (retrying
    /// cannot help) once none is left.
    private func seedRefused(_ address: String, _ why: String, seeds: [String]) {
        let rest = seeds.filter { $0 != address }
        guard !rest.isEmpty else { return fail(why) }
        logger.warning("a seed refused the join; trying the others", metadata: ["seed": "\(address)", "why": "\(why)", "left": "\(rest)"])
        join = .joining(seeds: rest, lastError: why)
    }

    /// The shared link layer (the coordinator sends through it too).
    var peerLinks: PeerLinks { links }

    /// Listeners told of every member change (the coordinator's voter management).
    var onMemberChange: ((Membership.Member, Membership.State?) -> Void)?
    /// Listeners told when an established DEALER to an address drops.
    var onConnectionLost: ((String) -> Void)?

    /// Leaves gracefully; returns how many members were told directly.
    func leave(loop: TransportLoop) -> Int {
        let d = instance.leave(now: now(loop))
        carryOut(d, loop: loop)
        return d.filter { if case .send = $0 { true } else { false } }.count
    }

    func updateMeta(_ meta: Membership.Meta, loop: TransportLoop) {
        carryOut(instance.updateMeta(meta, now: now(loop)), loop: loop)
    }

    // MARK: Directives

    private func carryOut(_ directives: [Membership.Directive], loop: TransportLoop) {
        for d in directives {
            switch d {
            case .send(let packet, let destination):
                sent += 1
                let frames = [Wire.encode(packet)]
                switch destination {
                case .node(let id, let address): links.send(frames, to: id, address: address, loop: loop)
                case .address(let address): links.send(frames, to: nil, address: address, loop: loop)
                }
            case .scheduleTick(let at):
                if let t = timer { loop.cancel(t) }
                let delay = at - now(loop)
                timer = loop.schedule(after: max(.zero, delay)) { [weak self] loop in
                    guard let self else { return }
                    self.timer = nil
                    self.carryOut(self.instance.onTick(now: self.now(loop)), loop: loop)
                }
            case .memberChanged(let m, let previous):
                log(m, previous: previous)
                onMemberChange?(m, previous)
            case .persistIncarnation(let inc):
                do {
                    try dataDirectory.writeIncarnation(inc)
                } catch {
                    logger.error("cannot persist the incarnation: \(error)")
                }
            case .joined(let via):
                join = .joined
                let name = instance.member(via)?.meta.name ?? "\(via)"
                logger.info("joined the mesh", metadata: ["via": "\(name)", "members": "\(instance.activeCount)"])
            case .joinRejected(let reason, let by):
                fail("\(by) refused our join: \(reason)")
            }
        }
    }

    private func fail(_ reason: String) {
        guard case .joining = join else { return }
        join = .failed(reason)
        logger.error("join failed: \(reason)")
    }

    private func log(_ m: Membership.Member, previous: Membership.State?) {
        guard m.id != instance.id else { return }
        let meta: Logger.Metadata = ["member": "\(m.meta.name)", "address": "\(m.meta.address)", "incarnation": "\(m.incarnation)"]
        switch (previous, m.state) {
        case (nil, _): logger.info("member joined", metadata: meta)
        case (let p?, let s) where p != s:
            if s == .dead || s == .suspect {
                logger.warning("member is \(s) (was \(p))", metadata: meta)
            } else {
                logger.info("member is \(s) (was \(p))", metadata: meta)
            }
        default: logger.debug("member updated", metadata: meta)
        }
    }

    private func scheduleSweep(_ loop: TransportLoop) {
        sweepTimer = loop.schedule(after: .seconds(10)) { [weak self] loop in
            guard let self else { return }
            let active = Set(self.instance.memberList.filter { $0.state.isActive }.map(\.id))
            self.links.sweep(loop: loop, activeNodes: active)
            self.scheduleSweep(loop)
        }
    }

    // MARK: Status

    func status(node: WireNodeInfo, loop: TransportLoop) -> WireStatusReply {
        let t = now(loop)
        var reply = WireStatusReply()
        reply.node = node
        reply.nodeID = instance.id.rawValue
        reply.localHealth = UInt32(instance.localHealth)
        reply.gossipSent = sent
        reply.gossipReceived = received
        reply.uptimeSeconds = (loop.now - origin).seconds
        reply.members = instance.memberList.map { m in
            var s = WireMemberStatus()
            s.record = Wire.wire(Membership.Record(id: m.id, meta: m.meta, incarnation: m.incarnation, state: m.state))
            s.lastHeardMsAgo = m.lastHeard.map { Int64((t - $0).seconds * 1000) } ?? -1
            s.stateSinceMsAgo = Int64((t - m.stateSince).seconds * 1000)
            return s
        }
        var j = WireJoinStatus()
        switch join {
        case .founder: j.state = .founder
        case .joining(let seeds, let lastError):
            j.state = .joining
            j.seeds = seeds
            j.error = lastError ?? ""
        case .joined: j.state = .joined
        case .failed(let why):
            j.state = .failed
            j.error = why
            j.permanent = true
        }
        reply.join = j
        return reply
    }
}
