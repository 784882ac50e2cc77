using System.Net;
using System.Net.Sockets;
using Spectre.Console;

namespace NatKit.Cli.Tests;

/// <summary>How flag values are read: every address form a user writes, IPv6 included, and one sentence naming
/// the flag for a bad one.</summary>
public sealed class CliFlagsTests
{
    [Theory]
    [InlineData("127.0.0.1", "127.0.0.1:3478")]
    [InlineData("127.0.0.1:5000", "127.0.0.1:5000")]
    [InlineData("::1", "[::1]:3478")]
    [InlineData("[::1]", "[::1]:3478")]
    [InlineData("[::1]:23490", "[::1]:23490")]
    [InlineData("[2001:db8::1]:0", "[2001:db8::1]:0")]
    [InlineData("0.0.0.0:0", "0.0.0.0:0")]
    [InlineData("[2001:db8::1:1080]", "[2001:db8::1:1080]:3478")] // brackets keep an address a bare form would make ambiguous
    [InlineData("2001:db8::5", "[2001:db8::5]:3478")]
    [InlineData("fe80::1", "[fe80::1]:3478")]
    public void EndPoint_ReadsEveryForm_KeepingTheIpv6Port(string text, string expected) =>
        Assert.Equal(expected, CliFlags.EndPoint(text, 3478, "--listen").ToString());

    [Theory]
    [InlineData("127.0.0.1:99999", "--listen 127.0.0.1:99999: port 99999 is out of range; use 1-65535 (0 for any free port).")]
    [InlineData("[::1]:65536", "--listen [::1]:65536: port 65536 is out of range")]
    [InlineData("127.0.0.1:http", "--listen 127.0.0.1:http: 'http' is not a port number")]
    [InlineData("localhost:80", "--listen localhost:80: 'localhost' is not an IP address")]
    [InlineData("1", "--listen 1: '1' is not an IP address")]
    [InlineData("[::1", "--listen [::1: expected ADDRESS[:PORT]")]
    [InlineData("::1:1080", "--listen ::1:1080: an IPv6 address with a port needs brackets: write [::1]:1080 (or [::1:1080] for the address alone).")]
    [InlineData("2001:db8::5:3478", "--listen 2001:db8::5:3478: an IPv6 address with a port needs brackets: write [2001:db8::5]:3478")]
    public void EndPoint_RefusesABadValue_NamingTheFlag(string text, string expected)
    {
        var e = Assert.Throws<CliException>(() => CliFlags.EndPoint(text, 3478, "--listen"));
        Assert.StartsWith(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Address_ChecksTheFamily()
    {
        Assert.Equal(IPAddress.Parse("2001:db8::1"), CliFlags.Address("2001:db8::1", "--relay6", AddressFamily.InterNetworkV6, "x"));
        var e = Assert.Throws<CliException>(() =>
            CliFlags.Address("2001:db8::1", "--external-ip", AddressFamily.InterNetwork, "it is announced for IPv4 relays"));
        Assert.Equal("--external-ip 2001:db8::1: must be an IPv4 address: it is announced for IPv4 relays.", e.Message);
        Assert.Null(CliFlags.Address(null, "--relay6", AddressFamily.InterNetworkV6, "x"));
    }

    [Theory]
    [InlineData("50000-60000", 50000, 60000)]
    [InlineData("3478-3478", 3478, 3478)]
    public void PortRange_ReadsMinMax(string text, int min, int max) =>
        Assert.Equal((min, max), CliFlags.PortRange(text, "--ports"));

    [Theory]
    [InlineData("60000-50000", "--ports 60000-50000: the first port must not be above the second; write it 50000-60000.")]
    [InlineData("0-10", "--ports 0-10: port 0 is out of range; use 1-65535.")]
    [InlineData("5000", "--ports 5000: expected a port range MIN-MAX like 49152-65535.")]
    public void PortRange_RefusesABadRange_InTheUsersWords(string text, string expected) =>
        Assert.Equal(expected, Assert.Throws<CliException>(() => CliFlags.PortRange(text, "--ports")).Message);

    [Fact]
    public void TextRows_ShowBracketsAsWritten_AndPlainConsolesWriteNoEscapes()
    {
        var writer = new StringWriter();
        var console = CliOutput.Create(writer, unwrapped: true);
        var table = new Table().AddColumns("transport", "endpoint");
        table.AddTextRow("udp", "[::1]:3478");
        table.AddTextRow("tcp", "[red]not a style[/]");
        console.Write(table);
        console.MarkupLine("[green]ok[/] " + Markup.Escape(new string('x', 300)));
        var text = writer.ToString();
        Assert.Contains("[::1]:3478", text, StringComparison.Ordinal);
        Assert.Contains("[red]not a style[/]", text, StringComparison.Ordinal);
        Assert.DoesNotContain('\u001b', text);
        Assert.Contains("ok " + new string('x', 300), text, StringComparison.Ordinal); // not wrapped at 80
    }
}
