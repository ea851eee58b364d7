import MeshCore

/// Fuzzer input read as a stream of choices (libFuzzer's FuzzedDataProvider, in Swift). When the
/// bytes run out every choice is zero, so any input, even an empty one, is a whole test case.
/// Numbers lean towards the values that break arithmetic: 0, 1, the type's extremes, powers of two
/// and the mesh's own bounds and their neighbours.
public struct FuzzBytes {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// From a seeded generator: `count` random bytes (the property tests' source).
    public init(seed: UInt64, count: Int) {
        var rng = SeededRandom(seed: seed)
        var b: [UInt8] = []
        b.reserveCapacity(count)
        while b.count < count {
            var v = rng.next()
            for _ in 0..<8 where b.count < count {
                b.append(UInt8(truncatingIfNeeded: v))
                v >>= 8
            }
        }
        self.init(b)
    }

    public var isExhausted: Bool { position >= bytes.count }

    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func raw64() -> UInt64 {
        var v: UInt64 = 0
        for _ in 0..<8 { v = v << 8 | UInt64(byte()) }
        return v
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    /// A choice among `n` (0 if `n` is 0).
    public mutating func pick(_ n: Int) -> Int { n <= 0 ? 0 : Int(byte()) % n }

    public mutating func element<T>(_ list: [T]) -> T? { list.isEmpty ? nil : list[pick(list.count)] }

    /// The values worth trying for a 64-bit field.
    static let interesting: [UInt64] = [
        0, 1, 2, 3, 7, 100, 1000, 86_400, 1 << 31, (1 << 31) - 1, 1 << 32, (1 << 32) - 1, 1 << 62, (1 << 62) + 1,
        1 << 63, (1 << 63) - 1, .max, .max - 1, Limits.maxLeaseSeconds, Limits.maxLeaseSeconds + 1,
        Limits.maxTimeoutSeconds, Limits.maxTimeoutSeconds + 1, Limits.maxID, Limits.maxID - 1,
    ]

    public mutating func u64() -> UInt64 {
        switch byte() % 4 {
        case 0: return FuzzBytes.interesting[pick(FuzzBytes.interesting.count)]
        case 1: return UInt64(byte())
        case 2: return raw64() % 100_000
        default: return raw64()
        }
    }

    public mutating func i64() -> Int64 {
        switch byte() % 4 {
        case 0: return [0, 1, -1, .min, .max, .min + 1, .max - 1, Limits.maxDrainDeadlineMillis, Limits.maxDrainDeadlineMillis + 1][pick(9)]
        case 1: return Int64(byte())
        default: return Int64(bitPattern: u64())
        }
    }

    public mutating func int() -> Int {
        switch byte() % 5 {
        case 0: return [0, 1, -1, .min, .max, 2, Limits.maxJobSlots, Limits.maxJobSlots + 1, Limits.maxGPUs + 1, Int(Int32.max), Int(Int32.min)][pick(11)]
        case 1, 2: return Int(byte() % 8)
        default: return Int(truncatingIfNeeded: u64())
        }
    }

    public mutating func count(_ upTo: Int) -> Int { pick(upTo + 1) }

    /// Texts just over and under the bounds (64 KiB for most text, 4 KiB for paths, 256 B for
    /// names), made once: building them on every call was most of the fuzzer's time.
    static let long = [257, 255, 4097, 4095, Limits.maxText + 1, Limits.maxText, 1000].map { String(repeating: "x", count: $0) }

    public mutating func text() -> String {
        switch byte() % 6 {
        case 0: return ""
        case 1 where byte() % 4 == 0:
            return FuzzBytes.long[pick(FuzzBytes.long.count)]
        case 1, 2: return ["a", "/bin/sh", "..", "../../etc/shadow", "n0", "n1", "\u{0}", "é", "lease_seconds", "max_voters"][pick(10)]
        default:
            var s = ""
            for _ in 0..<pick(12) { s.unicodeScalars.append(Unicode.Scalar(UInt8(32 + byte() % 95))) }
            return s
        }
    }
}
