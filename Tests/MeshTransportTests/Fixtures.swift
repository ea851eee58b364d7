import MeshTestSupport
import MeshTransport
import Synchronization

/// A handler that answers every message on the listener with the same frames, and records what it
/// saw for the test to read.
final class EchoHandler: TransportHandler {
    let seen: Box<[InboundMessage]>
    let events: Box<[ConnectionEvent]>

    init(seen: Box<[InboundMessage]>, events: Box<[ConnectionEvent]>) {
        self.seen = seen
        self.events = events
    }

    func received(_ message: InboundMessage, loop: TransportLoop) {
        seen.update { $0.append(message) }
        if case .listener(let route) = message.source {
            loop.reply(to: route, message.frames)
        }
    }

    func connectionEvent(_ event: ConnectionEvent, loop: TransportLoop) {
        events.update { $0.append(event) }
    }
}

/// A transport with an echoing handler, listening on a free loopback port.
struct EchoServer {
    let transport: Transport
    let endpoint: String
    let seen = Box<[InboundMessage]>([])
    let events = Box<[ConnectionEvent]>([])

    init(security: TransportSecurity, settings: TransportSettings = .testing) throws {
        let seen = self.seen, events = self.events
        transport = try Transport(settings: settings, security: security) { _ in
            EchoHandler(seen: seen, events: events)
        }
        endpoint = try transport.run { loop in try loop.listen("tcp://127.0.0.1:*") }
    }

    func shutdown() { transport.shutdown() }
}

extension TransportSettings {
    static var testing: TransportSettings {
        var s = TransportSettings()
        s.heartbeatInterval = .milliseconds(200)
        s.heartbeatTimeout = .milliseconds(800)
        s.handshakeTimeout = .seconds(2)
        s.reconnectIntervalMax = .milliseconds(300)
        return s
    }
}

let meshKeys = ClusterSecret.generate().keys
let otherMeshKeys = ClusterSecret.generate().keys

/// Sends one request and returns how it failed, or nil if a reply came.
func requestFailure(
    endpoint: String, security: ClientSecurity, settings: TransportSettings, timeout: Duration
) throws -> RequestError? {
    let client = try RequestClient(endpoint: endpoint, security: security, settings: settings)
    do {
        _ = try client.request([[1]], timeout: timeout)
        return nil
    } catch {
        return error
    }
}
