using System.Net;
using NatKit.Lab;
using NatKit.Net;
using NatKit.Scenarios.Matrix;
using NatKit.Scenarios.Probe;
using NatKit.Stun.Client;
using NatKit.Traversal.HardNat;
using NatKit.Turn.Client;

namespace NatKit.Scenarios.Tests;

/// <summary>Each cell's lab is wired as its types say: the NAT engine, seen from the peer through the lab's own STUN
/// servers, shows the port behaviour the oracle reads from the knobs, the relay allocates, and the links carry the
/// impairment asked for.</summary>
public sealed class MatrixLabTests
{
    public static TheoryData<string> GridTypes =>
        new(MatrixTypes.All.Where(t => t.Placement != MatrixPlacement.SameLan).Select(t => t.Name));

    [Theory]
    [MemberData(nameof(GridTypes))]
    public void ThePeersNat_AllocatesPortsAsTheOracleAssumes(string name)
    {
        var type = MatrixTypes.Find(name)!;
        var cell = MatrixLab.Build(type, MatrixTypes.Find("open")!, seed: 7);
        var profile = cell.Lab.Run(async () =>
        {
            var services = await MatrixServices.StartAsync(cell);
            return await LabProbe.ObservePortAllocationAsync(cell.A, services.Stun);
        });

        Assert.NotNull(profile);
        var expected = EffectiveNat.Of(type.Chain);
        Assert.Equal(expected.Open ? null : IPAddress.Parse("198.51.100.1"), expected.Open ? null : profile.PublicAddress);
        var seen = profile.IsStable ? PortKnowledge.Known
            : profile.IsPredictable ? PortKnowledge.Predictable
            : profile.IsRandomSymmetric ? PortKnowledge.Unknown
            : (PortKnowledge?)null;
        Assert.Equal(expected.Knowledge, seen);
    }

    [Fact]
    public void Cgnat_PutsTheHomeRouterOnACarrierAddressIn100_64_0_0_10()
    {
        var cell = MatrixLab.Build(MatrixTypes.Find("cgnat")!, MatrixTypes.Find("open")!, seed: 1);
        var home = cell.Lab.Routers.Single(r => r.Name == "nat-a");
        var carrier = cell.Lab.Routers.Single(r => r.Name == "carrier1-nat-a");
        Assert.True(home.OutsideAddresses.Single().IsSharedAddressSpace, home.OutsideAddresses.Single().ToString()); // 100.64.0.0/10
        Assert.Equal("198.51.100.1", carrier.OutsideAddresses.Single().ToString());
    }

    [Theory]
    [InlineData("same-lan", false)]
    [InlineData("same-lan-hairpin", true)]
    public void SameLan_HostAddressesAlwaysReachEachOther_ThePublicMappingOnlyThroughAHairpin(string name, bool hairpin)
    {
        var type = MatrixTypes.Find(name)!;
        var cell = MatrixLab.Build(type, type, seed: 3);
        var (host, viaNat) = cell.Lab.Run(async () =>
        {
            await MatrixServices.StartAsync(cell);
            using var a = await cell.A.BindUdpAsync(new IPEndPoint(IPAddress.Any, 5000));
            using var b = await cell.B.BindUdpAsync(new IPEndPoint(IPAddress.Any, 5000));
            var stun = new StunClient(cell.A);
            var mappedA = (await stun.BindingAsync(a, cell.Rendezvous))!.MappedAddress!;
            var mappedB = (await new StunClient(cell.B).BindingAsync(b, cell.Rendezvous))!.MappedAddress!;
            await a.SendToAsync("host"u8.ToArray(), new IPEndPoint(IPAddress.Parse("192.168.1.11"), 5000));
            var gotHost = await ReceiveAsync(cell, b);
            await b.SendToAsync("open"u8.ToArray(), mappedA); // opens B's filter toward A's mapping
            await a.SendToAsync("nat"u8.ToArray(), mappedB);
            var gotNat = await ReceiveAsync(cell, b);
            return (gotHost, gotNat);
        });

        Assert.Equal("host", host);
        Assert.Equal(hairpin ? "nat" : null, viaNat);
    }

    [Fact]
    public void TheRelay_Allocates_InAHardCell_AndIsAbsentWithNoRelay()
    {
        var hard = MatrixTypes.Find("symmetric-random")!;
        var cell = MatrixLab.Build(hard, hard, seed: 5);
        var relayed = cell.Lab.Run(async () =>
        {
            await MatrixServices.StartAsync(cell);
            await using var turn = await TurnClient.AllocateAsync(cell.A,
                new TurnClientOptions(cell.Turn!, MatrixCellLab.TurnUser, MatrixCellLab.TurnPassword) { KeepAlive = false });
            await turn.CreatePermissionAsync(IPAddress.Parse("198.51.100.2"));
            return turn.RelayedEndPoint;
        });
        Assert.Equal(MatrixCellLab.TurnAddress, relayed.Address);

        var none = MatrixLab.Build(hard, hard, seed: 5, new MatrixLabOptions { Relay = false });
        Assert.Null(none.TurnHost);
        Assert.Null(none.Turn);
    }

    [Fact]
    public void EveryLink_CarriesTheLatencyAsked_ACrossingPaysTheSendersAndTheReceiversLink()
    {
        var open = MatrixTypes.Find("open")!;
        var cell = MatrixLab.Build(open, open, seed: 1,
            new MatrixLabOptions { Link = new LinkProfile { Latency = TimeSpan.FromMilliseconds(50) } });
        var rtt = cell.Lab.Run(async () =>
        {
            await MatrixServices.StartAsync(cell);
            using var s = await cell.A.BindUdpAsync(new IPEndPoint(IPAddress.Any, 0));
            var start = cell.Lab.Now;
            _ = await new StunClient(cell.A).BindingAsync(s, cell.Rendezvous);
            return cell.Lab.Now - start;
        });
        Assert.Equal(TimeSpan.FromMilliseconds(200), rtt);
    }

    private static async Task<string?> ReceiveAsync(MatrixCellLab cell, IDatagramSocket socket)
    {
        var buffer = new byte[64];
        using var idle = new CancellationTokenSource(TimeSpan.FromSeconds(1), cell.Lab.TimeProvider);
        try
        {
            var r = await socket.ReceiveFromAsync(buffer, idle.Token);
            return System.Text.Encoding.ASCII.GetString(buffer, 0, r.Length);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }
}
