import CZeroMQ
import Logging
import MeshCore

/// Names an outgoing connection of the transport: one DEALER per peer.
public struct PeerID: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var value: String
    public init(_ value: String) { self.value = value }
    public init(stringLiteral value: String) { self.value = value }
    public var description: String { value }
}

/// The ROUTER routing id of a connection that sent us a message; a reply goes back through it.
public struct Route: Hashable, Sendable {
    public var id: [UInt8]
    public init(_ id: [UInt8]) { self.id = id }
}

/// A message that arrived, and where from.
public struct InboundMessage: Sendable {
    public enum Source: Sendable, Equatable {
        /// On the listening ROUTER; reply with `TransportLoop.reply(to:_:)`.
        case listener(Route)
        /// On our DEALER to this peer (a reply to something we sent it).
        case peer(PeerID)
    }

    public var source: Source
    public var frames: [[UInt8]]
    public var userID: String?
    public var peerAddress: String?
    public var truncated: Bool

    public init(source: Source, frames: [[UInt8]], userID: String? = nil, peerAddress: String? = nil, truncated: Bool = false) {
        self.source = source
        self.frames = frames
        self.userID = userID
        self.peerAddress = peerAddress
        self.truncated = truncated
    }
}

/// Something that happened to a connection.
public enum ConnectionEvent: Sendable, Equatable {
    /// The monitor of the DEALER to a peer reported this, and what it changed.
    case peer(PeerID, MonitorRecord, ConnectionTracker.Change)
    /// The monitor of the listening ROUTER reported this.
    case listener(MonitorRecord)
    /// The ZAP handler refused a client.
    case rejected(address: String, mechanism: String, keyFingerprint: String?)
}

/// The agent-side logic that runs on the I/O thread. It is called only from that thread and may
/// use the loop freely inside its callbacks.
public protocol TransportHandler: AnyObject {
    func received(_ message: InboundMessage, loop: TransportLoop)
    func connectionEvent(_ event: ConnectionEvent, loop: TransportLoop)
    /// The loop is about to close its sockets; the last chance to send.
    func stopping(loop: TransportLoop)
}

extension TransportHandler {
    public func connectionEvent(_ event: ConnectionEvent, loop: TransportLoop) {}
    public func stopping(loop: TransportLoop) {}
}

/// A handle on a scheduled callback.
public struct TimerID: Hashable, Sendable {
    let value: UInt64
}

/// The I/O thread's side of the transport: owns every socket, runs `zmq_poll`, fires timers.
/// Not Sendable; reach it from other threads with `Transport.execute`.
public final class TransportLoop {
    public let settings: TransportSettings
    public let security: TransportSecurity
    public let logger: Logger
    public let clock = ContinuousClock()
    public internal(set) var handler: (any TransportHandler)?

    let context: Context
    let wake: Socket
    let zap: ZAPHandler
    private var listener: Socket?
    private var listenerMonitor: Monitor?
    private(set) public var listeningEndpoints: [String] = []
    private var peers: [PeerID: PeerConnection] = [:]
    private var timers = TimerQueue()
    private var running = true
    private var pollDirty = true
    private var pollItems: [zmq_pollitem_t] = []
    private var pollTargets: [PollTarget] = []
    let takeWork: () -> [@Sendable (TransportLoop) -> Void]

    final class PeerConnection {
        let endpoint: String
        let socket: Socket
        let monitor: Monitor
        var tracker = ConnectionTracker()
        init(endpoint: String, socket: Socket, monitor: Monitor) {
            self.endpoint = endpoint
            self.socket = socket
            self.monitor = monitor
        }
    }

    private enum PollTarget {
        case wake, zap, listener, listenerMonitor
        case peer(PeerID), peerMonitor(PeerID)
    }

    init(
        context: Context, settings: TransportSettings, security: TransportSecurity, logger: Logger,
        wakeEndpoint: String, takeWork: @escaping () -> [@Sendable (TransportLoop) -> Void]
    ) throws {
        self.context = context
        self.settings = settings
        self.security = security
        self.logger = logger
        self.takeWork = takeWork
        // The ZAP handler comes first: no socket of this context may listen before it exists.
        zap = try ZAPHandler(context: context, allowed: security.allowedClients)
        wake = try Socket(context, .pair)
        try wake.bind(wakeEndpoint)
    }

    public var now: ContinuousClock.Instant { clock.now }

    // MARK: Listening

    /// Binds the listening ROUTER (made on first use) to one more endpoint: `tcp://HOST:PORT`
    /// (`:*` for a free port) or `ipc://PATH`. Returns the endpoint actually bound.
    @discardableResult
    public func listen(_ endpoint: String) throws -> String {
        if listener == nil {
            let s = try Socket(context, .router)
            try s.configureListener(settings, security: security)
            listenerMonitor = try s.monitor()
            listener = s
            pollDirty = true
        }
        let bound = try listener!.bind(endpoint)
        listeningEndpoints.append(bound)
        return bound
    }

    /// Sends a reply to a connection that sent us a message on the listener.
    @discardableResult
    public func reply(to route: Route, _ frames: [[UInt8]]) -> Socket.SendOutcome {
        guard let listener else { return .failed(TransportError("reply", detail: "not listening")) }
        return listener.send([route.id] + frames)
    }

    // MARK: Peers

    /// Opens a DEALER to a peer (if there is none yet under this id) and connects it; libzmq
    /// reconnects on its own after a drop. Messages sent before the handshake completes are refused
    /// (`ZMQ_IMMEDIATE`), so nothing queues up for a peer that is not there.
    public func connect(_ peer: PeerID, endpoint: String, security: ClientSecurity? = nil) throws {
        if let existing = peers[peer] {
            if existing.endpoint == endpoint { return }
            disconnect(peer)
        }
        let s = try Socket(context, .dealer)
        try s.configureDealer(settings, security: security ?? self.security.client(as: .peer))
        let m = try s.monitor()
        try s.connect(Self.endpoint(endpoint, from: settings.sourceAddress))
        peers[peer] = PeerConnection(endpoint: endpoint, socket: s, monitor: m)
        pollDirty = true
    }

    /// A TCP endpoint with libzmq's source-address prefix (`tcp://SOURCE:0;HOST:PORT`).
    static func endpoint(_ endpoint: String, from source: String?) -> String {
        guard let source, !source.isEmpty, endpoint.hasPrefix("tcp://") else { return endpoint }
        let host = source.contains(":") && !source.hasPrefix("[") ? "[\(source)]" : source
        return "tcp://\(host):0;" + endpoint.dropFirst("tcp://".count)
    }

    /// Closes the DEALER to a peer.
    public func disconnect(_ peer: PeerID) {
        guard let p = peers.removeValue(forKey: peer) else { return }
        p.socket.close()
        p.monitor.close()
        pollDirty = true
    }

    public func isConnected(_ peer: PeerID) -> Bool { peers[peer]?.tracker.isEstablished ?? false }
    public func hasConnection(to peer: PeerID) -> Bool { peers[peer] != nil }
    /// What the monitor has said about the connection to `peer`, for error messages.
    public func diagnosis(_ peer: PeerID) -> ConnectionDiagnosis? { peers[peer]?.tracker.diagnosis }
    public var connectedPeers: [PeerID] { peers.filter { $0.value.tracker.isEstablished }.map(\.key) }

    /// Sends to a peer without blocking. `.wouldBlock` means no connection (yet) or a full queue:
    /// the message is dropped and the caller decides whether to retry.
    @discardableResult
    public func send(to peer: PeerID, _ frames: [[UInt8]]) -> Socket.SendOutcome {
        guard let p = peers[peer] else { return .failed(TransportError("send", detail: "no connection to \(peer)")) }
        return p.socket.send(frames)
    }

    // MARK: Timers

    /// Calls `body` on this thread after `delay`.
    @discardableResult
    public func schedule(after delay: Duration, _ body: @escaping (TransportLoop) -> Void) -> TimerID {
        timers.add(deadline: now + delay, body)
    }

    public func cancel(_ timer: TimerID) { timers.cancel(timer) }

    // MARK: Running

    /// Asks the loop to finish the current iteration and stop.
    public func stop() { running = false }

    func run() {
        while running {
            if pollDirty { rebuildPollItems() }
            let timeout: Int = timers.nextDeadline.map { d in
                let left = d - now
                return left <= .zero ? 0 : Int(left.millisecondsRoundedUp)
            } ?? -1
            let rc = pollItems.withUnsafeMutableBufferPointer { zmq_poll($0.baseAddress, Int32($0.count), timeout) }
            if rc < 0 {
                let err = TransportError.zmq("zmq_poll")
                if err.errno == EINTR { continue }
                logger.error("I/O loop stopped", metadata: ["error": "\(err)"])
                break
            }
            if rc > 0 {
                // Copy: handlers may add or remove sockets while we walk the ready ones.
                let ready = zip(pollItems, pollTargets).filter { $0.0.revents & Int16(ZMQ_POLLIN) != 0 }.map(\.1)
                for target in ready { service(target) }
            }
            runDueTimers()
        }
        handler?.stopping(loop: self)
        closeAll()
    }

    private func rebuildPollItems() {
        var targets: [PollTarget] = [.wake, .zap]
        if listener != nil { targets += [.listener, .listenerMonitor] }
        for id in peers.keys.sorted(by: { $0.value < $1.value }) { targets += [.peer(id), .peerMonitor(id)] }
        pollTargets = targets
        pollItems = targets.map { t in
            zmq_pollitem_t(socket: socket(for: t)?.pollHandle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
        }
        pollDirty = false
    }

    private func socket(for target: PollTarget) -> Socket? {
        switch target {
        case .wake: wake
        case .zap: zap.socket
        case .listener: listener
        case .listenerMonitor: listenerMonitor?.socket
        case .peer(let id): peers[id]?.socket
        case .peerMonitor(let id): peers[id]?.monitor.socket
        }
    }

    private func service(_ target: PollTarget) {
        switch target {
        case .wake:
            while (try? wake.receive()) != nil {}
            for work in takeWork() { work(self) }
        case .zap:
            for r in zap.serve() {
                handler?.connectionEvent(.rejected(address: r.address, mechanism: r.mechanism, keyFingerprint: r.keyFingerprint), loop: self)
            }
        case .listener:
            for _ in 0..<settings.receiveBatch {
                guard let s = listener, let m = receive(s) else { break }
                guard m.frames.count >= 2 else { continue }
                let msg = InboundMessage(
                    source: .listener(Route(m.frames[0])), frames: Array(m.frames.dropFirst()),
                    userID: m.userID, peerAddress: m.peerAddress, truncated: m.truncated)
                handler?.received(msg, loop: self)
            }
        case .listenerMonitor:
            while let r = listenerMonitor?.next() { handler?.connectionEvent(.listener(r), loop: self) }
        case .peer(let id):
            for _ in 0..<settings.receiveBatch {
                guard let p = peers[id], let m = receive(p.socket) else { break }
                let msg = InboundMessage(
                    source: .peer(id), frames: m.frames, userID: m.userID, peerAddress: m.peerAddress,
                    truncated: m.truncated)
                handler?.received(msg, loop: self)
            }
        case .peerMonitor(let id):
            while let p = peers[id], let r = p.monitor.next() {
                let change = p.tracker.observe(r.event)
                handler?.connectionEvent(.peer(id, r, change), loop: self)
            }
        }
    }

    private func receive(_ socket: Socket) -> ReceivedMessage? {
        do {
            return try socket.receive(maxFrames: settings.maxFrames + 1)
        } catch {
            logger.warning("receive failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    private func runDueTimers() {
        while let body = timers.popDue(now: now) { body(self) }
    }

    private func closeAll() {
        for id in Array(peers.keys) { disconnect(id) }
        listener?.close()
        listenerMonitor?.close()
        listener = nil
        listenerMonitor = nil
        zap.socket.close()
        wake.close()
        handler = nil
    }
}

/// Timers in deadline order; cancelled ids are skipped when they surface.
struct TimerQueue {
    private var heap = Heap<ContinuousClock.Instant, UInt64>()
    private var bodies: [UInt64: (TransportLoop) -> Void] = [:]
    private var nextID: UInt64 = 0

    var count: Int { bodies.count }

    mutating func add(deadline: ContinuousClock.Instant, _ body: @escaping (TransportLoop) -> Void) -> TimerID {
        nextID += 1
        bodies[nextID] = body
        heap.push(deadline, nextID)
        return TimerID(value: nextID)
    }

    mutating func cancel(_ id: TimerID) { bodies[id.value] = nil }

    var nextDeadline: ContinuousClock.Instant? {
        mutating get {
            dropCancelled()
            return heap.minKey
        }
    }

    mutating func popDue(now: ContinuousClock.Instant) -> ((TransportLoop) -> Void)? {
        dropCancelled()
        guard let top = heap.min, top.key <= now else { return nil }
        _ = heap.pop()
        return bodies.removeValue(forKey: top.payload)
    }

    private mutating func dropCancelled() {
        while let top = heap.min, bodies[top.payload] == nil { _ = heap.pop() }
    }
}
