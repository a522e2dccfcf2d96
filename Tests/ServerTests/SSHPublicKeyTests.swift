import FleetFiles
import FleetProtocol
import FleetTestSupport
import Inventory
import Testing

/// A key value becomes one line of an authorized keys file: anything that would make it two lines is a second
/// key allowed to log in as the host, so it is refused by name.
@Suite("SSH public key lines")
struct SSHPublicKeyTests {
    static let keyA = FleetConfigurationTests.keyA
    static let keyB = FleetConfigurationTests.keyB

    @Test func aKeyFileWithTwoKeysIsRefusedNamingTheHost() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try FileIO.createDirectories(directory.path("hosts/a"))
        try directory.makeDirectory("keys")
        // `cat keys/a.pub keys/b.pub > keys/two.pub`
        try directory.writeFile("keys/two.pub", text: Self.keyA + "\n" + Self.keyB + "\n")
        try directory.writeFile("fleet.toml", text: "[hosts.a]\nkey_file = \"keys/two.pub\"\n")
        let error = try #require(throws: InventoryError.self) {
            try FleetConfiguration.load(repository: directory.path)
        }
        #expect(error.problems.count == 1, "\(error.problems)")
        let problem = try #require(error.problems.first)
        #expect(problem.contains("[hosts.a]") && problem.contains("key_file") && problem.contains("two.pub"))
        #expect(problem.contains("more than one line"), "\(problem)")
    }

    @Test(arguments: [
        "\(keyA)\\n\(keyB)", "\(keyA)\\r\(keyB)", "\(keyA)\\n\\n", "\(keyA) comment\\nrestrict \(keyB)",
        "\(keyA)\\u2028\(keyB)",
    ])
    func anInlineKeyWithALineBreakIsRefused(value: String) throws {
        let found = try FleetConfigurationTests().problems("[hosts.a]\nkey = \"\(value)\"\n")
        #expect(found.count == 1 && found[0].contains("[hosts.a]") && found[0].contains("\"key\""), "\(found)")
        #expect(found[0].contains("more than one line"), "\(found)")
    }

    @Test(arguments: ["\\u0007", "\\u001b[2J", "\\t\\u007f"])
    func aCommentWithAControlCharacterIsRefused(suffix: String) throws {
        let found = try FleetConfigurationTests().problems("[hosts.a]\nkey = \"\(Self.keyA)\(suffix)x\"\n")
        #expect(found.count == 1 && found[0].contains("control character"), "\(found)")
    }

    /// OpenSSH accepts tabs between the fields; so does fleet, and the line it writes uses spaces.
    @Test func tabsSeparateFieldsAsOpenSSHAllows() throws {
        let parts = Self.keyA.split(separator: " ")
        let key = try SSHPublicKey("\(parts[0])\t\(parts[1])\t\t\(parts[2])\n")
        #expect(key == (try SSHPublicKey(Self.keyA)))
        #expect(key.comment == "host-a")
        #expect(try key.authorizedKeysLine(options: "restrict") == "restrict \(Self.keyA)\n")
    }

    @Test func aBinaryKeyFileIsNotAPublicKey() throws {
        let directory = try TestDirectory.makeTemporary()
        defer { directory.remove() }
        try FileIO.createDirectories(directory.path("hosts/a"))
        try directory.makeDirectory("keys")
        try FileIO.writeAtomically(
            [0x00, 0x01, 0xff, 0xfe, 0x80] + Array(repeating: 0x41, count: 100), to: directory.path("keys/a.pub"))
        try directory.writeFile("fleet.toml", text: "[hosts.a]\nkey_file = \"keys/a.pub\"\n")
        let error = try #require(throws: InventoryError.self) {
            try FleetConfiguration.load(repository: directory.path)
        }
        #expect(error.problems.count == 1)
        #expect(error.problems[0].contains("not a public key") && !error.problems[0].contains("cannot read"))
    }

    @Test func aKeyFileWithOneKeyAndItsNewlineIsAccepted() throws {
        #expect(try SSHPublicKey(fileContents: Array((Self.keyA + "\n").utf8)).comment == "host-a")
        #expect(try SSHPublicKey(fileContents: Array((Self.keyA + "\r\n").utf8)).comment == "host-a")
        #expect(try SSHPublicKey(Self.keyA + "  ").comment == "host-a")
    }
}
