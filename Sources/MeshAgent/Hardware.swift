import Foundation

/// What this host has to offer: CPUs and memory from the kernel, GPUs from `nvidia-smi` when it
/// is installed.
public struct Hardware: Sendable, Equatable {
    public var cpus: Int
    public var memoryMB: Int
    public var gpus: Int
    public var gpuModel: String

    public static func detect() -> Hardware {
        let cpus = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        let memoryMB = pages > 0 && pageSize > 0 ? pages * pageSize / (1 << 20) : 0
        let (gpus, model) = nvidiaGPUs() ?? (0, "")
        return Hardware(cpus: cpus, memoryMB: memoryMB, gpus: gpus, gpuModel: model)
    }

    /// GPU count and model from `nvidia-smi`, or nil when it is missing or fails.
    static func nvidiaGPUs() -> (Int, String)? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
            .split(separator: ":").map { "\($0)/nvidia-smi" }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let path else { return nil }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("mesh-nvidia-\(getpid()).txt").path
        defer { unlink(out) }
        guard let p = try? ChildProcess.spawn(path, ["--query-gpu=name", "--format=csv,noheader"], stdout: out, stderr: "/dev/null", newSession: false) else {
            return nil
        }
        guard let ended = p.wait(timeout: .seconds(5)) else {
            p.terminate(grace: .seconds(1))
            return nil
        }
        guard ended == .exited(0), let text = try? String(contentsOfFile: out, encoding: .utf8) else { return nil }
        let names = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return names.isEmpty ? nil : (names.count, names[0])
    }
}
