import FleetFiles
import FleetProtocol
import FleetTestSupport
import Foundation
import NixKit
import Testing

/// What fleet knows of Nix, in one module: narinfo files from a server (untrusted by the host), the attribute
/// rule shared by fleet.toml and manifests, and the one build invocation.
@Suite("Nix knowledge")
struct NixKitTests {
    static let hashA = "0c0f4kjlm6mmgd1abh2gxv3s4n2b6x4z"
    static let hashB = "1b1c9s1q3z4v5w6x7y8z9a0b1c2d3f4g"

    @Test func aNarInfoGivesItsNarAndReferences() throws {
        let text = """
            StorePath: /nix/store/\(Self.hashA)-system
            URL: nar/1abc.nar.xz
            Compression: xz
            References: \(Self.hashA)-system \(Self.hashB)-glibc-2.40
            Sig: fleet-1:abc

            """
        let info = try NarInfo(parsing: Array(text.utf8), name: "\(Self.hashA).narinfo")
        #expect(info.url == "nar/1abc.nar.xz" && info.narFile == "1abc.nar.xz")
        #expect(info.references == [Self.hashA, Self.hashB])
        // Sig may repeat (one line per key that signed the path).
        let signedTwice = try NarInfo(parsing: Array((text + "Sig: other-1:def\n").utf8), name: "x.narinfo")
        #expect(signedTwice == info)
    }

    /// What a `Sig:` line signs, as Nix makes it: references as full store paths, sorted (here given out of
    /// order), the path itself among them; nothing without the fields it is made of.
    @Test func aNarInfoGivesTheFingerprintNixSigns() throws {
        let hash = "sha256:1ygpmc3hgnbgh5msrqd5jbf9ggwbdf7lnpyg0vg8l63qxbj1vmjc"
        let text = """
            StorePath: /nix/store/\(Self.hashB)-system
            URL: nar/1abc.nar.zst
            NarHash: \(hash)
            NarSize: 4096
            References: \(Self.hashB)-system \(Self.hashA)-glibc-2.40

            """
        let info = try NarInfo(parsing: Array(text.utf8), name: "x.narinfo")
        #expect(info.narHash == hash && info.narSize == 4096)
        #expect(
            info.fingerprint
                == "1;/nix/store/\(Self.hashB)-system;\(hash);4096;/nix/store/\(Self.hashA)-glibc-2.40,"
                + "/nix/store/\(Self.hashB)-system")
        for missing in ["StorePath", "NarHash", "NarSize"] {
            let without = text.split(separator: "\n").filter { !$0.hasPrefix(missing + ":") }.joined(separator: "\n")
            #expect(
                try NarInfo(parsing: Array((without + "\n").utf8), name: "x.narinfo").fingerprint == nil, "\(missing)")
        }
        let malformedSize = text.replacingOccurrences(of: "NarSize: 4096", with: "NarSize: -1")
        #expect(try NarInfo(parsing: Array(malformedSize.utf8), name: "x.narinfo").fingerprint == nil)
    }

    @Test(arguments: [
        ("URL: ../../etc/shadow\n", "not a file in nar/"), ("URL: nar/../x\n", "not a file in nar/"),
        ("URL: nar/.hidden\n", "not a file in nar/"), ("URL: nar/a/b\n", "not a file in nar/"),
        ("StorePath: /nix/store/x\n", "no URL line"),
        ("URL: nar/a.nar\nReferences: ../../evil\n", "malformed reference"),
        ("URL: nar/a.nar\nReferences: \(hashA)-ok /nix/store/\(hashB)-abs\n", "malformed reference"),
        // Nix's reading (value two bytes after the first colon, the last of two keys) must be the one checked.
        ("URL: nar/good.nar\nURL:\t../../../../etc/hostname\n", "line 2 is not of the form"),
        ("URL: nar/good.nar\nURL: nar/other.nar\n", "gives \"URL\" twice"),
        ("URL: nar/good.nar\nDeriver: x\r\nURL: ../x\n", "gives \"URL\" twice"),
        ("URL:nar/a.nar\n", "line 1 is not of the form"), ("URL: nar/a.nar\n\n", "line 2 is not of the form"),
        ("URL: nar/a.nar", "does not end with a newline"),
    ])
    func aHostileNarInfoIsRefusedByName(text: String, why: String) {
        #expect {
            try NarInfo(parsing: Array(text.utf8), name: "x.narinfo")
        } throws: { error in
            "\(error)".contains("x.narinfo") && "\(error)".contains(why)
        }
        #expect(throws: NarInfo.Malformed.self) { try NarInfo(parsing: [0xff, 0xfe], name: "x.narinfo") }
    }

    /// A cache entry is a narinfo, an empty line, the NAR: the first newline followed by another ends the
    /// narinfo, whatever the NAR holds; a head without one (yet) gives nothing, and what is not a narinfo before
    /// it is the parser's to refuse.
    @Test func aCacheEntrySplitsAtTheFirstEmptyLine() throws {
        let narinfo = Array("StorePath: /nix/store/\(Self.hashA)-x\nURL: nar/a.nar\n".utf8)
        let nar: [UInt8] = [0x28, 0xb5, 0x2f, 0xfd, 0x0a, 0x0a, 0x00, 0x0a]
        let entry = CacheEntry.header(narinfo: narinfo) + nar
        let split = try #require(CacheEntry.split(head: entry))
        #expect(split.narinfo == narinfo && Array(entry[split.narOffset...]) == nar)
        #expect(CacheEntry.split(head: entry.prefix(narinfo.count)) == nil, "the empty line not read yet")
        #expect(CacheEntry.split(head: narinfo + [0x0a]).map { $0.narOffset } == narinfo.count + 1, "an empty NAR")
        // A narinfo of exactly the limit splits; one byte more does not.
        let prefix = Array("URL: nar/a.nar\nPadding: ".utf8)
        let atLimit = prefix + [UInt8](repeating: 0x78, count: CacheEntry.narinfoLimit - prefix.count - 1) + [0x0a]
        #expect(atLimit.count == CacheEntry.narinfoLimit)
        #expect(CacheEntry.split(head: CacheEntry.header(narinfo: atLimit) + nar)?.narOffset == atLimit.count + 1)
        #expect(CacheEntry.split(head: CacheEntry.header(narinfo: [0x78] + atLimit) + nar) == nil)
        // A narinfo longer than the limit: no split, however long the head.
        let long = Array(("URL: nar/a.nar\nPadding: " + String(repeating: "x", count: 64 << 10) + "\n\n").utf8)
        #expect(CacheEntry.split(head: long) == nil)
        // An empty narinfo, or one with an empty line of its own, splits early; the parser refuses what is left.
        let early = try #require(CacheEntry.split(head: Array("\n\nURL: nar/a.nar\n\n".utf8)))
        #expect(early.narOffset == 2)
        #expect(throws: NarInfo.Malformed.self) { try NarInfo(parsing: early.narinfo, name: "x") }
        #expect(CacheEntry.fileName(ofHashPart: Self.hashA) == Self.hashA && Nix.isHashPart(Self.hashA))
        #expect(!Nix.isHashPart(Self.hashA + ".narinfo") && !Nix.isHashPart(String(Self.hashA.dropLast()) + "e"))
    }

    /// A store path's hash part, and every way a string is not a store path that the byte-wise check must still
    /// refuse (the hash's alphabet, the dash, the name's characters, the store directory).
    @Test func aStorePathsHashPartIsFoundAndAnythingElseRefused() {
        let hash = Self.hashA
        #expect(Nix.hashPart(ofStorePath: "/nix/store/\(hash)-glibc-2.39+x_y.z?=1") == hash)
        for refused in [
            "/nix/store/\(hash)", "/nix/store/\(hash)-", "/nix/store/\(hash)glibc", "/nix/store/\(hash)-a/b",
            "/nix/store/\(hash)-é", "/nix/store/\(hash)-a b", "/nix/stor/\(hash)-a", "nix/store/\(hash)-a",
            "/nix/store/\(hash.uppercased())-a", "/nix/store/\(String(hash.dropLast()))e-a",
            "/nix/store/\(String(hash.dropLast()))-a", "/nix/store//\(hash)-a",
        ] {
            #expect(Nix.hashPart(ofStorePath: refused) == nil, "\(refused)")
        }
        #expect(!Nix.isHashPart("") && !Nix.isHashPart(hash + "0") && !Nix.isHashPart(String(hash.dropLast()) + "é"))
    }

    /// Nix's base32 of a digest, against `nix-hash --to-base32` itself.
    @Test func base32IsNixs() throws {
        for text in ["", "fleet", String(repeating: "nar", count: 1000)] {
            let hex = SHA256Hasher.hex(Array(text.utf8))
            let nix = try TestCommand.run("/usr/bin/nix-hash", ["--type", "sha256", "--to-base32", hex])
            #expect(nix.succeeded, "\(nix.standardError)")
            let digest = stride(from: 0, to: hex.count, by: 2).map {
                UInt8(hex.dropFirst($0).prefix(2), radix: 16)!
            }
            #expect(NixBase32.encode(digest) == nix.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines))
            #expect(NixBase32.isSHA256(NixBase32.encode(digest)))
        }
        let info = try NarInfo(
            parsing: Array("URL: nar/a.nar\nFileHash: sha256:\(String(repeating: "0", count: 52))\n".utf8),
            name: "x.narinfo")
        #expect(info.fileSHA256 == String(repeating: "0", count: 52))
        let hexHash = try NarInfo(parsing: Array("URL: nar/a.nar\nFileHash: sha256:abc\n".utf8), name: "x.narinfo")
        #expect(hexHash.fileSHA256 == nil)
    }

    @Test func theAttributeRuleIsOneRule() {
        for good in ["web-01", "0", "_x", "a'b", "Host_2"] { #expect(NixAttribute.isValid(good), "\(good)") }
        for bad in ["", "-x", "'x", "a b", "a.b", "a\"b", "a$b", "ä", String(repeating: "a", count: 201)] {
            #expect(!NixAttribute.isValid(bad), "\(bad)")
        }
    }

    @Test func theBuildInvocationFollowsTheTree() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        #expect(SystemBuild.invocation(tree: directory.path, attribute: "a", outLink: "/r") == nil)
        try directory.writeFile("configuration.nix", text: "{ }\n")
        #expect(SystemBuild.invocation(tree: directory.path, attribute: "a", outLink: "/r")?.executable == "nix-build")
        try directory.writeFile("flake.nix", text: "{ }\n")
        let flake = try #require(SystemBuild.invocation(tree: directory.path, attribute: "web-01", outLink: "/r"))
        #expect(flake.executable == "nix")
        #expect(
            flake.arguments.contains(
                "path:\(directory.path)#nixosConfigurations.\"web-01\".config.system.build.toplevel"))
    }
}
