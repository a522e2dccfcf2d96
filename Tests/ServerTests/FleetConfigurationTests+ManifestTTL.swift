import Inventory
import Testing

/// `manifest_ttl_seconds` (freeze protection): a week unless set; hostile values are refused naming the file.
extension FleetConfigurationTests {
    @Test func theManifestTTLIsAWeekUnlessSet() throws {
        #expect(try parse("").server.manifestTTLSeconds == 604_800)
        #expect(try parse("[server]\nmanifest_ttl_seconds = 3600\n").server.manifestTTLSeconds == 3600)
        #expect(try parse("[server]\nmanifest_ttl_seconds = 31536000\n").server.manifestTTLSeconds == 31_536_000)
    }

    @Test(arguments: ["0", "-1", "3599", "31536001", "9223372036854775807", "1.5", "\"604800\"", "true", "[1]"])
    func hostileManifestTTLsAreRefusedNamingTheFile(value: String) throws {
        let found = try problems("[server]\nmanifest_ttl_seconds = \(value)\n")
        #expect(found.count == 1, "\(found)")
        #expect(
            found.first?.contains(
                "fleet.toml: [server] key \"manifest_ttl_seconds\": expected an integer in 3600...31536000") == true,
            "\(found)")
    }
}
