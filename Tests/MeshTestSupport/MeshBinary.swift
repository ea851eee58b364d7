import Foundation

/// The `mesh` executable that `swift build` put next to the test bundle (or `$MESH_BINARY`).
public enum MeshBinary {
    public static var path: String {
        if let p = ProcessInfo.processInfo.environment["MESH_BINARY"], !p.isEmpty { return p }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        // The test runner may sit inside a bundle directory; walk up until `mesh` is beside us.
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("mesh").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir.deleteLastPathComponent()
        }
        return "mesh"
    }
}
