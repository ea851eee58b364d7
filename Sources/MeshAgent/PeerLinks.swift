import Logging
import MeshCore
import MeshTransport
import MeshWire

/// How an agent reaches other agents. Each pair of agents needs one connection, used both ways: a
/// message goes out on our own DEALER to the peer when that is up, else back along the connection
/// the peer opened to our ROUTER, else on a new DEALER (queued until its handshake completes).
/// DEALERs unused for a while are closed, so a mesh of hundreds does not hold hundreds of sockets.
final class PeerLinks {
    struct Settings {
        /// Messages held for a DEALER that is still connecting; older ones are dropped.
        var queueLimit = 64
        var queueAge: Duration = .seconds(3)
        /// A DEALER idle for this long is closed.
        var idleTimeout: Duration = .seconds(60)
    }

    private struct Link {
        let peer: PeerID
        let address: String
        var pending: [(frames: [[UInt8]], at: ContinuousClock.Instant)] = []
        var lastUsed: ContinuousClock.Instant
        /// Nodes we reached through this link, for telling Membership which member dropped.
        var nodes: Set<NodeID> = []
    }

    private var links: [String: Link] = [:]
    private var byPeer: [PeerID: String] = [:]
    /// The ROUTER connection each node opened to us, as last seen.
    private var routes: [NodeID: Route] = [:]
    private let settings: Settings
    private let logger: Logger
    private var limiter = LogLimiter()

    init(settings: Settings = .init(), logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    /// A message from `node` arrived on our ROUTER through `route`: replies can go back that way.
    func noteRoute(_ route: Route, for node: NodeID) {
        routes[node] = route
    }

    /// Which address a DEALER peer id belongs to.
    func address(of peer: PeerID) -> String? { byPeer[peer] }

    /// Nodes reached through the link to `address`.
    func nodes(at address: String) -> Set<NodeID> { links[address]?.nodes ?? [] }

    func send(_ frames: [[UInt8]], to node: NodeID?, address: String, loop: TransportLoop) {
        // The receiver would refuse it and drop the connection (libzmq's MAXMSGSIZE), again and again.
        let size = frames.reduce(0) { $0 + $1.count }
        guard size <= Wire.maxEnvelopeSize else {
            logger.warning("not sending a message of \(size >> 20) MiB to \(address): over the \(Wire.maxEnvelopeSize >> 20) MiB limit")
            return
        }
        if var link = links[address], loop.isConnected(link.peer) {
            if loop.send(to: link.peer, frames) == .sent {
                link.lastUsed = loop.now
                if let node { link.nodes.insert(node) }
                links[address] = link
                return
            }
        }
        if let node, let route = routes[node] {
            switch loop.reply(to: route, frames) {
            case .sent: return
            case .unreachable: routes[node] = nil
            case .wouldBlock: return  // its queue is full: this message is lost, as on a busy network
            case .failed(let e): logger.debug("reply to \(node) failed: \(e)")
            }
        }
        queue(frames, node: node, address: address, loop: loop)
    }

    private func queue(_ frames: [[UInt8]], node: NodeID?, address: String, loop: TransportLoop) {
        let now = loop.now
        if links[address] == nil {
            guard let a = try? AgentAddress(parsing: address), case .tcp = a else {
                limiter.warning(logger, key: "address:\(address)", now: now, "not sending to '\(address)': not a HOST:PORT address")
                return
            }
            let peer = PeerID("peer \(address)")
            do {
                try loop.connect(peer, endpoint: a.endpoint)
            } catch {
                limiter.warning(logger, key: "connect:\(address)", now: now, "cannot connect to \(address): \(error)")
                return
            }
            links[address] = Link(peer: peer, address: address, lastUsed: now)
            byPeer[peer] = address
        }
        var link = links[address]!
        if let node { link.nodes.insert(node) }
        link.pending.removeAll { now - $0.at > settings.queueAge }
        if link.pending.count >= settings.queueLimit { link.pending.removeFirst() }
        link.pending.append((frames, now))
        link.lastUsed = now
        links[address] = link
        if loop.isConnected(link.peer) { flush(address, loop: loop) }
    }

    /// The DEALER to `peer` completed its handshake: send what waited for it.
    func established(_ peer: PeerID, loop: TransportLoop) {
        if let address = byPeer[peer] { flush(address, loop: loop) }
    }

    private func flush(_ address: String, loop: TransportLoop) {
        guard var link = links[address] else { return }
        let now = loop.now
        for item in link.pending where now - item.at <= settings.queueAge {
            if loop.send(to: link.peer, item.frames) != .sent { break }
        }
        link.pending.removeAll()
        links[address] = link
    }

    /// Opens our own DEALER to `address` if there is none (for the coordinator: its monitor is what
    /// notices, at once, that the coordinator's process died).
    func ensureConnection(to address: String, node: NodeID, loop: TransportLoop) {
        if var link = links[address] {
            link.nodes.insert(node)
            links[address] = link
            return
        }
        guard let a = try? AgentAddress(parsing: address), case .tcp = a else { return }
        let peer = PeerID("peer \(address)")
        do {
            try loop.connect(peer, endpoint: a.endpoint)
        } catch {
            return
        }
        links[address] = Link(peer: peer, address: address, lastUsed: loop.now, nodes: [node])
        byPeer[peer] = address
    }

    /// Notes that something arrived on the DEALER to `peer`, which keeps it from being closed.
    func used(_ peer: PeerID, loop: TransportLoop) {
        if let a = byPeer[peer] { links[a]?.lastUsed = loop.now }
    }

    /// Closes the DEALER to `address` (after its handshake failed, say).
    func close(_ address: String, loop: TransportLoop) {
        guard let link = links.removeValue(forKey: address) else { return }
        byPeer[link.peer] = nil
        loop.disconnect(link.peer)
    }

    /// Closes DEALERs unused for `idleTimeout`, and forgets routes of nodes no longer in the mesh.
    func sweep(loop: TransportLoop, activeNodes: Set<NodeID>) {
        let now = loop.now
        for (address, link) in links where now - link.lastUsed > settings.idleTimeout {
            close(address, loop: loop)
        }
        routes = routes.filter { activeNodes.contains($0.key) }
    }

    var openLinks: Int { links.count }
}
