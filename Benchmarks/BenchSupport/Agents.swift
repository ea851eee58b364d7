// Real agents for the benchmarks: a mesh of N `mesh agent` processes on loopback, each in a data
// directory of its own under /tmp, founded by n0 and joined through it.
import Foundation
import MeshAgent
import MeshCore
import MeshTransport
import MeshWire

public final class Agents {
    public let root: String
    public var dirs: [String] = []
    public var processes: [ChildProcess?] = []
    public var addresses: [String] = []
    public let binary: String

    public var extra: [String] = []

    /// `under`: the folder to make the agents' directories in (default /tmp).
    public init(count: Int, extra: [String] = [], under: String = "/tmp") throws {
        self.extra = extra
        var t = Array("\(under)/mb-XXXXXX".utf8CString)
        _ = mkdtemp(&t)
        root = String(decoding: t.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        binary = URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("mesh").path
        var secret = ClusterSecret.generate()
        for i in 0..<count {
            let d = DataDirectory(path: "\(root)/n\(i)")
            // n0 founds the mesh (its log makes it the first voter); the others join it.
            _ = try MeshSetup.initialise(d, existingKey: i == 0 ? nil : secret.text)
            if i == 0 { secret = try d.readKey() }
            dirs.append(d.path)
            processes.append(nil)
            addresses.append("")
            try start(i)
        }
    }

    public func start(_ i: Int) throws {
        // The first start joins through n0; a restart keeps its address and needs no seed.
        let restart = !addresses[i].isEmpty
        let seeds = i == 0 || restart ? [] : ["--join", addresses[0]]
        let listen = restart ? addresses[i] : "127.0.0.1:0"
        unlink(dirs[i] + "/agent.endpoint")
        let p = try ChildProcess.spawn(binary, ["agent", "--data-dir", dirs[i], "--name", "n\(i)", "--listen", listen] + seeds + extra,
                                       stdout: dirs[i] + ".log", stderr: dirs[i] + ".log")
        processes[i] = p
        for _ in 0..<1000 {
            if let t = try? String(contentsOfFile: dirs[i] + "/agent.endpoint", encoding: .utf8), t.hasSuffix("\n") {
                addresses[i] = String(t.trimmingCharacters(in: .whitespacesAndNewlines).dropFirst("tcp://".count))
                return
            }
            usleep(10_000)
        }
        throw AgentStartError(description: "agent n\(i) did not start within 10 s (log: \(dirs[i]).log)")
    }

    public func status(_ i: Int) -> WireStatusReply? {
        guard let secret = try? DataDirectory(path: dirs[i]).readKey(),
              let c = try? MeshClient(address: DataDirectory(path: dirs[i]).localAddress, secret: secret) else { return nil }
        defer { c.close() }
        return try? c.status(local: true, timeout: .seconds(2))
    }

    public func state(of name: String, seenBy i: Int) -> WireMemberState? {
        status(i)?.members.first { $0.record.meta.name == name }?.record.state
    }

    public func wait(_ timeout: Duration, _ condition: () -> Bool) -> Double? {
        let start = ContinuousClock.now
        while ContinuousClock.now - start < timeout {
            if condition() { return (ContinuousClock.now - start).seconds }
            usleep(10_000)
        }
        return nil
    }

    /// Waits for a coordinator with every agent a voter and registered; returns a follower's index.
    public func follower(of n: Int) -> Int? {
        guard wait(.seconds(60), { (0..<n).allSatisfy { i in status(i).map { $0.coordinator.leader != 0 && $0.coordinator.voters.count == n && $0.nodes.count == n } ?? false } }) != nil else {
            return nil
        }
        let leader = (0..<n).first { i in status(i).map { $0.coordinator.leader == $0.nodeID } ?? false } ?? 0
        return (leader + 1) % n
    }

    public func client(_ i: Int) throws -> MeshClient {
        try MeshClient(address: DataDirectory(path: dirs[i]).localAddress, secret: try DataDirectory(path: dirs[i]).readKey())
    }

    public func stopAll() {
        for p in processes { p?.terminate(grace: .seconds(3)) }
        try? FileManager.default.removeItem(atPath: root)
    }
}

public func cpuTicks(_ pid: Int32) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return 0 }
    let f = s.split(separator: ")").last!.split(separator: " ")
    return Int(f[11])! + Int(f[12])!
}

public func rssKB(_ pid: Int32) -> Int {
    guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
          let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
    return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
}

public struct AgentStartError: Error, CustomStringConvertible {
    public var description: String
}
