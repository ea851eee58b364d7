import Logging
import MeshCore
import MeshTransport
import MeshWire

/// The agent's protocol logic on the I/O thread: answers clients, pings peers on request, and
/// turns bad input into error replies and rate-limited warnings. It never stops on bad input.
final class AgentHandler: TransportHandler {
    private let node: Box<WireNodeInfo>
    private let logger: Logger
    private let requestStop: @Sendable () -> Void
    /// Set once the agent has bound its address (the membership metadata needs it).
    var membership: MembershipShell?
    var consensus: ConsensusShell?
    var jobs: JobsShell?
    var lifecycle: Lifecycle?
    private var limiter = LogLimiter()
    private var nextRequestID: UInt64 = 1
    private var peerPings: [UInt64: PeerPing] = [:]

    /// A `mesh ping --from` in progress: a client asked us to ping another agent.
    private struct PeerPing {
        var client: Route
        var clientRequestID: UInt64
        var peer: PeerID
        var endpoint: String
        var sentAt: ContinuousClock.Instant?
        var timer: TimerID
    }

    init(node: Box<WireNodeInfo>, logger: Logger, requestStop: @escaping @Sendable () -> Void) {
        self.node = node
        self.logger = logger
        self.requestStop = requestStop
    }

    // MARK: Messages

    func received(_ message: InboundMessage, loop: TransportLoop) {
        switch message.source {
        case .listener(let route): handleRequest(message, from: route, loop: loop)
        case .peer(let peer): handlePeerReply(message, from: peer, loop: loop)
        }
    }

    private func handleRequest(_ message: InboundMessage, from route: Route, loop: TransportLoop) {
        let who = message.peerAddress ?? "a local client"
        let envelope: WireEnvelope
        do {
            envelope = try decode(message)
        } catch {
            limiter.warning(logger, key: "bad:\(who)", now: loop.now, "dropped a message from \(who): \(error)")
            send(Wire.errorReply(for: error), to: route, loop: loop)
            return
        }
        switch envelope.body {
        case .ping:
            var pong = WirePong()
            pong.responder = node.value
            send(Wire.envelope(.pong(pong), requestID: envelope.requestID), to: route, loop: loop)
        case .pingPeer(let request):
            startPeerPing(request, client: route, requestID: envelope.requestID, loop: loop)
        case .statusRequest(let r):
            if let consensus {
                consensus.status(local: r.local, query: StatusQuery(r), path: .route(route), requestID: envelope.requestID, loop: loop)
            } else if let membership {
                send(Wire.envelope(.statusReply(membership.status(node: node.value, loop: loop)), requestID: envelope.requestID), to: route, loop: loop)
            } else {
                send(Wire.error(.retryLater, "the agent is starting", requestID: envelope.requestID), to: route, loop: loop)
            }
        case .leaveRequest:
            leave(client: route, requestID: envelope.requestID, loop: loop)
        case .setupRequest(let r):
            guard let lifecycle else { return send(Wire.error(.retryLater, "the agent is starting", requestID: envelope.requestID), to: route, loop: loop) }
            guard r.commands.count <= 1000, r.commands.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 64 << 10 }) else {
                return send(Wire.error(.badRequest, "setup commands must be 1 to 1000 non-empty commands of at most 64 KiB", requestID: envelope.requestID), to: route, loop: loop)
            }
            lifecycle.setupRequest(r, path: .route(route), requestID: envelope.requestID, loop: loop)
        case .writeRequest(let w):
            guard let consensus else {
                send(Wire.error(.retryLater, "the agent is starting", requestID: envelope.requestID), to: route, loop: loop)
                return
            }
            do {
                var request = try Wire.request(w.request)
                // A submission names the agent that took it (results are copied back to it).
                if case .submit(let spec, let provenance, let at, let via) = request.command, via.rawValue == 0 {
                    request.command = .submit(spec, provenance, at: at == 0 ? unixMillis() : at, via: consensus.instance.id)
                }
                if case .setSetting(let key, let value) = request.command {
                    // A bad value would be replicated to every node: refused here, with the reason.
                    let problem: String? = if key == ClusterState.unfencedSetting {
                        ClusterState.debugBuild ? (value == "0" || value == "1" ? nil : "\(key) is 0 or 1") : "\(key) exists only in debug builds of mesh"
                    } else {
                        // (Keys outside the catalogue are opaque to the mesh; `mesh set` refuses them.)
                        ClusterState.settingProblem(key: key, value: value)
                    }
                    if let problem {
                        send(Wire.error(.badRequest, problem, requestID: envelope.requestID), to: route, loop: loop)
                        return
                    }
                }
                if case .plan(var chunk) = request.command, chunk.via.rawValue == 0 {
                    chunk.via = consensus.instance.id
                    if chunk.at == 0 { chunk.at = unixMillis() }
                    request.command = .plan(chunk)
                }
                consensus.write(request, path: .route(route), requestID: envelope.requestID, forwarded: false, loop: loop)
            } catch {
                send(Wire.error(.badRequest, "\(error)", requestID: envelope.requestID), to: route, loop: loop)
            }
        case .blobPut(let p):
            guard let jobs else { return send(Wire.error(.retryLater, "the agent is starting", requestID: envelope.requestID), to: route, loop: loop) }
            jobs.put(p, path: .route(route), requestID: envelope.requestID, loop: loop)
        case .blobGet(let g):
            guard let jobs else { return send(Wire.error(.retryLater, "the agent is starting", requestID: envelope.requestID), to: route, loop: loop) }
            jobs.get(g, path: .route(route), requestID: envelope.requestID, loop: loop)
        case .logRequest(var r):
            guard let jobs else { return send(Wire.error(.retryLater, "the agent is starting", requestID: envelope.requestID), to: route, loop: loop) }
            // Only agents pass a request on; a client's is answered in full.
            if message.userID == KeyRole.client.rawValue { r.forwarded = false }
            jobs.log(r, path: .route(route), requestID: envelope.requestID, loop: loop)
        case .gossip, .raft, .forwardedWrite, .forwardedStatus, .writeReply, .statusReply, .error, .blobStored, .blobChunk, .logChunk:
            // Agent-to-agent traffic, arriving on the connection the other agent opened to us.
            guard message.userID != KeyRole.client.rawValue else {
                send(Wire.error(.badRequest, "that message is for agents (peer key), not clients", requestID: envelope.requestID), to: route, loop: loop)
                return
            }
            fromPeer(envelope, path: .route(route), who: who, loop: loop)
        default:
            limiter.warning(logger, key: "unsupported:\(who)", now: loop.now, "\(who) sent a request this agent does not handle")
            send(Wire.error(.unsupported, "this agent (mesh \(MeshVersion.string)) does not handle that request", requestID: envelope.requestID), to: route, loop: loop)
        }
    }

    func status(loop: TransportLoop) -> WireStatusReply? {
        consensus?.statusReply(loop: loop) ?? membership?.status(node: node.value, loop: loop)
    }

    /// Messages between agents, whichever side of the connection they arrive on.
    private func fromPeer(_ envelope: WireEnvelope, path: ReplyPath, who: String, loop: TransportLoop) {
        switch envelope.body {
        case .gossip(let w):
            let source: InboundMessage.Source? = switch path {
            case .route(let r): .listener(r)
            case .dealer(let p): .peer(p)
            case .local: nil
            }
            guard let source else { return }
            receiveGossip(w, via: source, who: who, loop: loop)
        case .raft(let w):
            do {
                consensus?.received(try Wire.packet(w), loop: loop)
            } catch {
                limiter.warning(logger, key: "badraft:\(who)", now: loop.now, "dropped a raft message from \(who): \(error)")
            }
        case .forwardedWrite(let w):
            guard let consensus else { return path.send(Wire.error(.retryLater, "starting", requestID: envelope.requestID), loop: loop) }
            do {
                consensus.write(try Wire.request(w.request), path: path, requestID: envelope.requestID, forwarded: true, loop: loop)
            } catch {
                path.send(Wire.error(.badRequest, "\(error)", requestID: envelope.requestID), loop: loop)
            }
        case .forwardedStatus(let f):
            if let consensus { path.send(Wire.envelope(.statusReply(consensus.statusReply(loop: loop, query: StatusQuery(f))), requestID: envelope.requestID), loop: loop) }
        case .blobStored, .blobChunk, .logChunk:
            _ = jobs?.reply(envelope, loop: loop)
        case .blobPut(let p):
            // Another agent copying a blob to us: a bundle or an attempt's results, within their limits.
            jobs?.put(p, path: path, requestID: envelope.requestID, limit: jobs?.peerBlobLimit, loop: loop)
        case .blobGet(let g):
            var g = g
            g.holders = []
            jobs?.get(g, path: path, requestID: envelope.requestID, loop: loop)
        case .logRequest(var r):
            r.forwarded = true
            jobs?.log(r, path: path, requestID: envelope.requestID, loop: loop)
        case .writeReply, .error:
            if jobs?.reply(envelope, loop: loop) == true { return }
            if case .error(let e) = envelope.body, envelope.requestID < (1 << 40), case .dealer(let peer) = path {
                membership?.errorReply(e, from: peer, loop: loop)
            } else {
                consensus?.forwardedReply(envelope, loop: loop)
            }
        case .statusReply:
            consensus?.forwardedStatusReply(envelope, loop: loop)
        default:
            limiter.warning(logger, key: "unexpected:\(who)", now: loop.now, "\(who) sent an unexpected message")
        }
    }

    private func receiveGossip(_ w: WireGossipPacket, via source: InboundMessage.Source, who: String, loop: TransportLoop) {
        guard let membership else { return }
        do {
            membership.received(try Wire.packet(w), via: source, loop: loop)
        } catch {
            limiter.warning(logger, key: "badgossip:\(who)", now: loop.now, "dropped gossip from \(who): \(error)")
        }
    }

    /// Tells the mesh we are leaving, gives the news a moment to spread, answers the client, and
    /// asks the agent to stop.
    private func leave(client: Route, requestID: UInt64, loop: TransportLoop) {
        guard membership != nil else {
            send(Wire.error(.retryLater, "the agent is starting", requestID: requestID), to: client, loop: loop)
            return
        }
        leave(loop: loop) { [weak self] told, loop in
            guard let self else { return }
            var reply = WireLeaveReply()
            reply.told = UInt32(told)
            self.send(Wire.envelope(.leaveReply(reply), requestID: requestID), to: client, loop: loop)
            // Stop a moment later: sockets close without lingering, and the answer must be on
            // its way first (else `mesh leave` saw the connection drop and reported no answer).
            let stop = self.requestStop
            loop.schedule(after: .milliseconds(300)) { _ in stop() }
        }
    }

    /// Leaves gracefully; `done` gets how many members were told directly (the caller stops the
    /// agent).
    func leave(loop: TransportLoop, done: @escaping (Int, TransportLoop) -> Void) {
        guard let membership else { return done(0, loop) }
        // 0. finish copying logs and results to the nodes that took the submissions (and the
        // reports), 1. hand over coordination, 2. tell the mesh, 3. wait for our vote to be taken
        // away (the coordinator does that when gossip says we left), 4. answer and stop.
        let consensus = self.consensus
        let announce: (TransportLoop) -> Void = { [weak self] loop in
            guard let self else { return }
            self.lifecycle?.markLeft()
            let told = membership.leave(loop: loop)
            self.logger.info("leaving the mesh", metadata: ["told": "\(told)"])
            let finish: (TransportLoop) -> Void = { loop in
                loop.schedule(after: membership.instance.settings.gossipInterval * 3) { loop in done(told, loop) }
            }
            if let consensus { consensus.waitForVoteRemoval(loop: loop, then: finish) } else { finish(loop) }
        }
        let handOver: (TransportLoop) -> Void = { loop in
            if let consensus { consensus.handOverLeadership(loop: loop, then: announce) } else { announce(loop) }
        }
        waitForDeliveries(until: loop.now + .seconds(30), loop: loop, then: handOver)
    }

    private func waitForDeliveries(until deadline: ContinuousClock.Instant, loop: TransportLoop, then: @escaping (TransportLoop) -> Void) {
        guard jobs?.delivering == true, loop.now < deadline else { return then(loop) }
        loop.schedule(after: .milliseconds(50)) { [weak self] loop in
            guard let self else { return then(loop) }
            self.waitForDeliveries(until: deadline, loop: loop, then: then)
        }
    }

    private func decode(_ message: InboundMessage) throws(WireError) -> WireEnvelope {
        guard !message.truncated, message.frames.count == 1 else {
            throw .malformed("expected one frame, got \(message.truncated ? "too many" : String(message.frames.count))")
        }
        return try Wire.decode(message.frames[0])
    }

    private func send(_ envelope: WireEnvelope, to route: Route, loop: TransportLoop) {
        switch loop.reply(to: route, [Wire.encodeReply(envelope)]) {
        case .sent: break
        case .unreachable: logger.debug("client went away before its reply")
        case .wouldBlock: logger.debug("reply dropped: client's queue is full")
        case .failed(let e): logger.warning("reply failed: \(e)")
        }
    }

    // MARK: Pinging a peer for a client

    private func startPeerPing(_ request: WirePingPeer, client: Route, requestID: UInt64, loop: TransportLoop) {
        let address: AgentAddress
        do {
            address = try AgentAddress(parsing: request.endpoint)
        } catch {
            send(Wire.error(.badRequest, error.description, requestID: requestID), to: client, loop: loop)
            return
        }
        guard case .tcp = address else {
            send(Wire.error(.badRequest, "an agent can ping only TCP addresses", requestID: requestID), to: client, loop: loop)
            return
        }
        let id = nextRequestID
        nextRequestID += 1
        let peer = PeerID("ping \(id)")
        do {
            try loop.connect(peer, endpoint: address.endpoint)
        } catch {
            send(Wire.error(.internal, "cannot connect to \(address): \(error)", requestID: requestID), to: client, loop: loop)
            return
        }
        let timeout = Duration.milliseconds(Int(min(max(request.timeoutMs == 0 ? 3000 : request.timeoutMs, 100), 60_000)))
        let timer = loop.schedule(after: timeout) { [weak self] loop in
            guard let self, let p = self.peerPings[id] else { return }
            let why = loop.diagnosis(p.peer).map { "\($0)" } ?? "no connection"
            self.finish(id, Wire.error(.timeout, "no answer from \(p.endpoint) within \(timeout) (\(why))", requestID: p.clientRequestID), loop: loop)
        }
        peerPings[id] = PeerPing(client: client, clientRequestID: requestID, peer: peer, endpoint: address.description, timer: timer)
        if loop.isConnected(peer) { sendPeerPing(id, loop: loop) }
    }

    private func sendPeerPing(_ id: UInt64, loop: TransportLoop) {
        guard var p = peerPings[id], p.sentAt == nil else { return }
        var ping = WirePing()
        ping.sender = node.value.name
        p.sentAt = loop.now
        peerPings[id] = p
        if case .failed(let e) = loop.send(to: p.peer, [Wire.encode(.ping(ping), requestID: id)]) {
            finish(id, Wire.error(.unreachable, "cannot send to \(p.endpoint): \(e)", requestID: p.clientRequestID), loop: loop)
        }
    }

    private func handlePeerReply(_ message: InboundMessage, from peer: PeerID, loop: TransportLoop) {
        let envelope: WireEnvelope
        do {
            envelope = try decode(message)
        } catch {
            limiter.warning(logger, key: "badpeer:\(peer)", now: loop.now, "dropped a reply from \(peer): \(error)")
            return
        }
        guard let p = peerPings[envelope.requestID], p.peer == peer else {
            fromPeer(envelope, path: .dealer(peer), who: "\(peer)", loop: loop)
            return
        }
        switch envelope.body {
        case .pong(let pong):
            var result = WirePingPeerResult()
            result.via = node.value
            result.target = pong.responder
            if let sent = p.sentAt { result.roundTripNanos = UInt64(max(0, (loop.now - sent).nanoseconds)) }
            finish(envelope.requestID, Wire.envelope(.pingPeerResult(result), requestID: p.clientRequestID), loop: loop)
        case .error(var e):
            e.message = "\(p.endpoint) answered: \(e.message)"
            finish(envelope.requestID, Wire.envelope(.error(e), requestID: p.clientRequestID), loop: loop)
        default:
            finish(envelope.requestID, Wire.error(.internal, "\(p.endpoint) gave an unexpected answer", requestID: p.clientRequestID), loop: loop)
        }
    }

    private func finish(_ id: UInt64, _ reply: WireEnvelope, loop: TransportLoop) {
        guard let p = peerPings.removeValue(forKey: id) else { return }
        loop.cancel(p.timer)
        loop.disconnect(p.peer)
        send(reply, to: p.client, loop: loop)
    }

    // MARK: Connections

    func connectionEvent(_ event: ConnectionEvent, loop: TransportLoop) {
        switch event {
        case .peer(let peer, _, let change) where !peerPings.values.contains(where: { $0.peer == peer }):
            membership?.connectionEvent(peer, change, loop: loop)
        case .peer(let peer, _, .established):
            for (id, p) in peerPings where p.peer == peer { sendPeerPing(id, loop: loop) }
        case .peer(let peer, _, .handshakeFailed(let failure)):
            for (id, p) in peerPings where p.peer == peer {
                let reply = Wire.error(
                    .handshakeFailed,
                    "\(p.endpoint) refused the security handshake (\(failure)): it is not an agent of this mesh, or it holds another cluster key",
                    requestID: p.clientRequestID)
                finish(id, reply, loop: loop)
            }
        case .rejected(let address, let mechanism, let fingerprint):
            let key = fingerprint.map { "key \($0)" } ?? "no key (\(mechanism))"
            limiter.warning(logger, key: "rejected:\(address)", now: loop.now,
                            "refused a connection from \(address): \(key) is not one of this mesh's keys")
        case .listener(let record):
            if case .handshakeFailed(let f) = record.event {
                limiter.warning(logger, key: "handshake:\(f)", now: loop.now,
                                "a client failed the security handshake (\(f)); it probably holds another mesh's cluster key")
            }
        default:
            break
        }
    }

    func stopping(loop: TransportLoop) {
        jobs?.stopping(loop: loop)
        lifecycle?.stopping()
        for (id, p) in peerPings {
            finish(id, Wire.error(.unreachable, "the agent is shutting down", requestID: p.clientRequestID), loop: loop)
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        let (s, atto) = components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}
