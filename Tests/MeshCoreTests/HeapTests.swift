import MeshCore
import Testing

@Suite("Heap")
struct HeapTests {
    @Test("pops in key order, equal keys in insertion order")
    func order() {
        var rng = SeededRandom(seed: 7)
        var h = Heap<Int, Int>()
        var expected: [(Int, Int)] = []
        for i in 0..<500 {
            let k = Int(rng.next() % 50)
            h.push(k, i)
            expected.append((k, i))
        }
        expected.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        var out: [(Int, Int)] = []
        while let e = h.pop() { out.append((e.key, e.payload)) }
        #expect(out.map(\.0) == expected.map(\.0))
        #expect(out.map(\.1) == expected.map(\.1))
        #expect(h.isEmpty && h.pop() == nil)
    }
}
