import Foundation
import Glibc

/// One node of a directory tree as `lstat` sees it, for comparing what an extraction made.
struct Node: Equatable, CustomStringConvertible {
    enum Kind: Equatable {
        case directory
        case file([UInt8])
        case other(UInt32)
    }

    let path: String
    let kind: Kind
    let mode: UInt32

    var description: String { "\(path) \(kind) 0o\(String(mode, radix: 8))" }

    static func directory(_ path: String, _ mode: UInt32) -> Node {
        Node(path: path, kind: .directory, mode: mode)
    }

    static func file(_ path: String, _ mode: UInt32, _ contents: String) -> Node {
        Node(path: path, kind: .file(Array(contents.utf8)), mode: mode)
    }
}

/// Every node under `root`, depth first in byte order of names, without following links.
func tree(_ root: String) throws -> [Node] {
    var nodes: [Node] = []
    func walk(_ relative: String) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: relative.isEmpty ? root : "\(root)/\(relative)")
        for name in names.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            let path = relative.isEmpty ? name : "\(relative)/\(name)"
            var status = stat()
            guard lstat("\(root)/\(path)", &status) == 0 else { throw POSIXError(.ENOENT) }
            let type = UInt32(status.st_mode) & 0o170_000
            let mode = UInt32(status.st_mode) & 0o7777
            switch type {
            case 0o040_000:
                nodes.append(Node(path: path, kind: .directory, mode: mode))
                try walk(path)
            case 0o100_000:
                let contents = try Data(contentsOf: URL(fileURLWithPath: "\(root)/\(path)"))
                nodes.append(Node(path: path, kind: .file(Array(contents)), mode: mode))
            default:
                nodes.append(Node(path: path, kind: .other(type), mode: mode))
            }
        }
    }
    try walk("")
    return nodes
}

/// The mode bits of `path` (not following a link).
func mode(of path: String) -> UInt32? {
    var status = stat()
    guard lstat(path, &status) == 0 else { return nil }
    return UInt32(status.st_mode) & 0o7777
}

func readBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Bytes that do not compress to nothing, so that sizes and chunking are exercised for real.
func noise(count: Int, seed: UInt64 = 1) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return UInt8(truncatingIfNeeded: state >> 56)
    }
}
