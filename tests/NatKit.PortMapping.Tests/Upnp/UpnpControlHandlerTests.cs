using System.Text;
using FsCheck;
using FsCheck.Fluent;
using NatKit.Nat;
using NatKit.Packets;
using NatKit.PortMapping.Upnp;

namespace NatKit.PortMapping.Tests.Upnp;

/// <summary>The IGD's control core over a real NAT engine: the WANIPConnection:2 actions, their error codes, and the
/// safety rules (inside only, own address, lifetime cap, quota), one table row per rule.</summary>
public sealed class UpnpControlHandlerTests : IDisposable
{
    private static readonly Ipv4Address Alice = Ipv4Address.Parse("192.168.1.10");
    private static readonly Ipv4Address Alan = Ipv4Address.Parse("192.168.1.11");
    private static readonly Ipv4Address Stranger = Ipv4Address.Parse("203.0.113.9");

    private readonly NatEngine _engine;
    private readonly UpnpControlHandler _handler;
    private long _now = 1_000;

    public UpnpControlHandlerTests() : this(NatPresets.PortRestrictedCone with { ServeUpnp = true, MaxPortMappingsPerHost = 4 })
    {
    }

    private UpnpControlHandlerTests(NatPolicy policy)
    {
        _engine = new NatEngine(new NatConfig
        {
            Policy = policy,
            InsidePrefixes = [Ipv4Prefix.Parse("192.168.1.0/24")],
            ExternalAddresses = [Ipv4Address.Parse("198.51.100.1")],
        }, _now);
        _handler = new UpnpControlHandler(_engine, _now);
    }

    public void Dispose() => _engine.Dispose();

    private static UpnpAction Add(string externalPort, string internalPort = "7000", string client = "192.168.1.10",
        string lease = "3600", string protocol = "UDP", string remote = "", string enabled = "1", string action = "AddPortMapping") =>
        new(UpnpDeviceDescription.WanIpConnection2, action,
        [
            new("NewRemoteHost", remote), new("NewExternalPort", externalPort), new("NewProtocol", protocol),
            new("NewInternalPort", internalPort), new("NewInternalClient", client), new("NewEnabled", enabled),
            new("NewPortMappingDescription", "d"), new("NewLeaseDuration", lease),
        ]);

    private static UpnpAction Specific(string externalPort, string protocol = "UDP") =>
        new(UpnpDeviceDescription.WanIpConnection2, "GetSpecificPortMappingEntry",
            [new("NewRemoteHost", ""), new("NewExternalPort", externalPort), new("NewProtocol", protocol)]);

    private UpnpReply Do(UpnpAction action, Ipv4Address? from = null) => _handler.Handle(action, from ?? Alice, _now);

    public static TheoryData<string, UpnpError> Refusals => new()
    {
        { "ExternalPortZero", UpnpError.WildCardNotPermittedInExtPort },
        { "InternalPortZero", UpnpError.WildCardNotPermittedInIntPort },
        { "AnotherHostsAddress", UpnpError.ActionNotAuthorized },
        { "FromOutside", UpnpError.ActionNotAuthorized },
        { "BadProtocol", UpnpError.InvalidArgs },
        { "MissingArgument", UpnpError.InvalidArgs },
        { "Disabled", UpnpError.ActionFailed },
        { "BadRemoteHost", UpnpError.InvalidArgs },
        { "UnknownAction", UpnpError.InvalidAction },
        { "OtherService", UpnpError.InvalidAction },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void AddPortMapping_IsRefused_WithTheSpecsErrorCode(string row, UpnpError expected)
    {
        var (action, from) = row switch
        {
            "ExternalPortZero" => (Add("0"), Alice),
            "InternalPortZero" => (Add("9000", internalPort: "0"), Alice),
            "AnotherHostsAddress" => (Add("9000", client: "192.168.1.11"), Alice),
            "FromOutside" => (Add("9000", client: "203.0.113.9"), Stranger),
            "BadProtocol" => (Add("9000", protocol: "SCTP"), Alice),
            "MissingArgument" => (new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "AddPortMapping", [new("NewExternalPort", "1")]), Alice),
            "Disabled" => (Add("9000", enabled: "0"), Alice),
            "BadRemoteHost" => (Add("9000", remote: "not-an-address"), Alice),
            "UnknownAction" => (new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "ForceTermination", []), Alice),
            _ => (new UpnpAction("urn:schemas-upnp-org:service:Layer3Forwarding:1", "GetExternalIPAddress", []), Alice),
        };
        var reply = Do(action, from);
        Assert.Null(reply.Response);
        Assert.Equal(expected, reply.Error);
        Assert.Empty(_engine.ListMappings(_now));
    }

    [Fact]
    public void ThirdPartyMappings_AreAllowed_OnlyWhenThePolicySays()
    {
        using var open = new UpnpControlHandlerTests(NatPresets.PortRestrictedCone with { AllowThirdPartyMappings = true });
        var reply = open.Do(Add("9000", client: "192.168.1.11"));
        Assert.NotNull(reply.Response);
        Assert.Equal(Alan, open._engine.ListMappings(open._now)[0].Internal.Address);
        // Still never for an address outside.
        Assert.Equal(UpnpError.ActionNotAuthorized, open.Do(Add("9001", client: "203.0.113.9")).Error);
    }

    [Theory]
    [InlineData("0", 86400)] // IGD:2: 0 means the longest lease (604800 s), then the policy's cap (24 h by default)
    [InlineData("4294967295", 86400)] // longer than IGD:2 allows: cut
    [InlineData("60", 60)]
    public void Leases_AreCappedByIgd2AndThePolicy_AndReportedBack(string lease, int expected)
    {
        Assert.NotNull(Do(Add("9000", lease: lease)).Response);
        var entry = Do(Specific("9000")).Response!;
        Assert.Equal(expected.ToString(System.Globalization.CultureInfo.InvariantCulture), entry["NewLeaseDuration"]);
    }

    [Fact]
    public void Leases_AreCappedByThePolicy()
    {
        using var capped = new UpnpControlHandlerTests(NatPresets.PortRestrictedCone with { PortMappingMaxLifetime = TimeSpan.FromMinutes(5) });
        Assert.NotNull(capped.Do(Add("9000", lease: "0")).Response);
        Assert.Equal("300", capped.Do(Specific("9000")).Response!["NewLeaseDuration"]);
        capped._now += 301_000;
        Assert.Equal(UpnpError.NoSuchEntryInArray, capped.Do(Specific("9000")).Error);
    }

    [Fact]
    public void TheQuota_HoldsUnderAFlood_AndOtherHostsStillGetTheirs()
    {
        var granted = 0;
        for (var i = 0; i < 1000; i++)
        {
            var reply = Do(Add((10000 + i).ToString(System.Globalization.CultureInfo.InvariantCulture),
                internalPort: (20000 + i).ToString(System.Globalization.CultureInfo.InvariantCulture)));
            if (reply.Response is not null)
            {
                granted++;
            }
            else
            {
                Assert.Equal(UpnpError.NoPortMapsAvailable, reply.Error);
            }
        }

        Assert.Equal(4, granted);
        Assert.NotNull(Do(Add("30000", client: "192.168.1.11"), Alan).Response);
    }

    [Fact]
    public void AddAnyPortMapping_GivesAnotherPort_WhenTheOneAskedIsTaken()
    {
        Assert.NotNull(Do(Add("9000", internalPort: "7000")).Response);
        var reply = Do(Add("9000", internalPort: "7001", client: "192.168.1.11", action: "AddAnyPortMapping"), Alan);
        var port = reply.Response!["NewReservedPort"];
        Assert.NotNull(port);
        Assert.NotEqual("9000", port);
        Assert.Equal("192.168.1.11", Do(Specific(port)).Response!["NewInternalClient"]);
    }

    [Fact]
    public void Refreshing_TheSameMapping_KeepsIt_AndUpdatesItsLease()
    {
        Assert.NotNull(Do(Add("9000", lease: "100")).Response);
        _now += 50_000;
        Assert.NotNull(Do(Add("9000", lease: "100")).Response);
        Assert.Equal("100", Do(Specific("9000")).Response!["NewLeaseDuration"]);
        Assert.Single(_engine.ListMappings(_now));
    }

    [Fact]
    public void GenericEntries_ListEveryMapping_ThenSay713()
    {
        Assert.NotNull(Do(Add("9001", internalPort: "7001", protocol: "TCP")).Response);
        Assert.NotNull(Do(Add("9000", internalPort: "7000")).Response);
        UpnpAction Generic(int i) => new(UpnpDeviceDescription.WanIpConnection2, "GetGenericPortMappingEntry",
            [new("NewPortMappingIndex", i.ToString(System.Globalization.CultureInfo.InvariantCulture))]);
        var first = Do(Generic(0)).Response!;
        Assert.Equal(("TCP", "9001"), (first["NewProtocol"], first["NewExternalPort"]));
        var second = Do(Generic(1)).Response!;
        Assert.Equal(("UDP", "9000", "192.168.1.10"), (second["NewProtocol"], second["NewExternalPort"], second["NewInternalClient"]));
        Assert.Equal(UpnpError.SpecifiedArrayIndexInvalid, Do(Generic(2)).Error);
    }

    [Fact]
    public void ARemoteHost_LimitsWhoReachesTheMapping()
    {
        Assert.NotNull(Do(Add("9000", remote: "203.0.113.50")).Response);
        Assert.True(Reaches(Ipv4Address.Parse("203.0.113.50"), 9000));
        Assert.False(Reaches(Ipv4Address.Parse("203.0.113.51"), 9000));
    }

    [Fact]
    public void StatusAndType_SayConnectedAndRouted()
    {
        var status = Do(new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "GetStatusInfo", [])).Response!;
        Assert.Equal("Connected", status["NewConnectionStatus"]);
        var ip = Do(new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "GetExternalIPAddress", [])).Response!;
        Assert.Equal("198.51.100.1", ip["NewExternalIPAddress"]);
        Assert.Equal(UpnpError.ActionNotAuthorized,
            Do(new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "GetExternalIPAddress", []), Stranger).Error);
    }

    [Fact]
    public void RandomArguments_NeverThrow_AndTheHandlerKeepsServing()
    {
        var names = new[] { "NewRemoteHost", "NewExternalPort", "NewProtocol", "NewInternalPort", "NewInternalClient",
            "NewEnabled", "NewPortMappingDescription", "NewLeaseDuration", "NewPortMappingIndex" };
        var actions = new[] { "AddPortMapping", "AddAnyPortMapping", "DeletePortMapping", "GetSpecificPortMappingEntry",
            "GetGenericPortMappingEntry", "GetExternalIPAddress", "X" };
        var values = Gen.Elements("", "0", "1", "65535", "65536", "-1", "TCP", "udp", "192.168.1.10", "192.168.1.11",
            "203.0.113.9", "*", "4294967296", "\u0000", "true");
        var gen = from a in Gen.Elements(actions)
                  from args in Gen.ListOf(from n in Gen.Elements(names) from v in values select new KeyValuePair<string, string>(n, v))
                  from source in Gen.Elements(Alice, Alan, Stranger)
                  select (a, args, source);
        Prop.ForAll(gen.ToArbitrary(), t =>
        {
            _handler.Handle(new UpnpAction(UpnpDeviceDescription.WanIpConnection2, t.a, t.args.ToList()), t.source, _now);
        }).QuickCheckThrowOnFailure();
        Assert.NotNull(Do(new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "GetExternalIPAddress", [])).Response);
        foreach (var m in _engine.ListMappings(_now))
        {
            Assert.True(m.Internal.Address == Alice || m.Internal.Address == Alan);
        }
    }

    [Fact]
    public void MalformedHttpAndSoap_GetTheirErrors_AndTheNextRequestIsServed()
    {
        var http = new UpnpHttpHandler(_handler, "uuid:x", "n", "s");
        string Send(string request)
        {
            var bytes = Encoding.UTF8.GetBytes(request);
            Assert.True(UpnpHttpHead.TryParse(bytes, out var head));
            return Encoding.UTF8.GetString(http.Handle(head, bytes.AsSpan(head.Length), Alice, _now));
        }

        Assert.StartsWith("HTTP/1.1 500", Send("POST /ctl/IPConn HTTP/1.1\r\nContent-Length: 5\r\n\r\n<a></"), StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 411", Send("POST /ctl/IPConn HTTP/1.1\r\n\r\n"), StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 404", Send("GET /etc/passwd HTTP/1.1\r\n\r\n"), StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 405", Send("PUT /rootDesc.xml HTTP/1.1\r\n\r\n"), StringComparison.Ordinal);
        var soap = new UpnpAction(UpnpDeviceDescription.WanIpConnection2, "GetExternalIPAddress", []).ToRequestXml();
        var mismatched = Send($"POST /ctl/IPConn HTTP/1.1\r\nSOAPAction: \"{UpnpDeviceDescription.WanIpConnection2}#DeletePortMapping\"\r\nContent-Length: {Encoding.UTF8.GetByteCount(soap)}\r\n\r\n{soap}");
        Assert.Contains("<errorCode>401</errorCode>", mismatched, StringComparison.Ordinal);
        var ok = Send($"POST /ctl/IPConn HTTP/1.1\r\nSOAPAction: \"{UpnpDeviceDescription.WanIpConnection2}#GetExternalIPAddress\"\r\nContent-Length: {Encoding.UTF8.GetByteCount(soap)}\r\n\r\n{soap}");
        Assert.StartsWith("HTTP/1.1 200", ok, StringComparison.Ordinal);
        Assert.Contains("<NewExternalIPAddress>198.51.100.1</NewExternalIPAddress>", ok, StringComparison.Ordinal);
    }

    private bool Reaches(Ipv4Address remote, ushort externalPort)
    {
        var buffer = new byte[64];
        var n = PacketBuilder.WriteIpv4Udp(buffer, new Ipv4Header(remote, Ipv4Address.Parse("198.51.100.1")), 5555,
            externalPort, new byte[4]);
        return _engine.Process(buffer, ref n, NatDirection.Inbound, _now, null).Action == NatAction.ForwardInside;
    }
}
