import Foundation
import MeshAgent
import MeshTestSupport
import Testing

/// The chaos harness (`mesh-chaos`, Benchmarks/MeshChaos) must be able to fail: against agents
/// whose fencing is switched off (a setting only debug builds have), pausing workers while their
/// jobs run must show up as the same job running twice at once.
@Suite("Chaos harness")
struct ChaosHarnessTests {
    /// Root, `ip` and `iptables` (network namespaces and firewall rules); CI runs as root and
    /// installs both (scripts/bootstrap).
    static var available: Bool {
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/iptables")
            && (FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip"))
    }

    static var harness: String {
        URL(fileURLWithPath: MeshBinary.path).deletingLastPathComponent().appendingPathComponent("mesh-chaos").path
    }

    @Test("fencing off: the harness reports concurrent duplicates and exits 1", .enabled(if: available))
    func unfencedRunFails() async throws {
        try await onProcessThread { try Self.unfencedRunFailsBody() }
    }

    static func unfencedRunFailsBody() throws {
        let dir = try TemporaryDirectory("chaos")
        defer { dir.remove() }
        let json = dir.sub("report.json"), out = dir.sub("out.txt")
        let p = try ChildProcess.spawn(
            Self.harness,
            ["--profile", "zombie", "--unfenced", "--seed", "3", "--duration", "30", "--mesh", MeshBinary.path,
             "--work", dir.sub("work"), "--json", json],
            stdout: out, stderr: out)
        let status = p.wait(timeout: .seconds(600)) ?? p.terminate(grace: .seconds(10))
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(status == .exited(1), "\(output)")
        let data = try Data(contentsOf: URL(fileURLWithPath: json))
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let duplicates = report["concurrentDuplicates"] as? Int ?? 0
        #expect(duplicates > 0, "\(output)")
        #expect(report["maxSimultaneousRuns"] as? Int ?? 0 >= 2)
        // Fencing off duplicates work; it does not lose acknowledged jobs.
        #expect(report["lost"] as? Int == 0, "\(output)")
        #expect(report["unfenced"] as? Bool == true)
    }
}
