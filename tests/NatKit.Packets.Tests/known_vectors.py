#!/usr/bin/env python3
"""Recomputes the byte vectors in KnownVectors.cs with plain struct arithmetic (RFC 1071 word sum), independently of NatKit.
Run: python3 tests/NatKit.Packets.Tests/known_vectors.py"""
import struct
def csum(b):
    if len(b)%2: b+=b'\0'
    s=sum(struct.unpack('!%dH'%(len(b)//2),b))
    while s>>16: s=(s&0xffff)+(s>>16)
    return (~s)&0xffff
def ip(a): return bytes(int(x) for x in a.split('.'))
src,dst=ip('192.0.2.1'),ip('198.51.100.7')
payload=b'hello'
udp=struct.pack('!HHHH',40000,53,8+len(payload),0)+payload
ph=src+dst+struct.pack('!BBH',0,17,len(udp))
c=csum(ph+udp); c = c or 0xffff
udp=udp[:6]+struct.pack('!H',c)+udp[8:]
hdr=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(udp),0x1234,0x4000,64,17,0,src,dst)
hdr=hdr[:10]+struct.pack('!H',csum(hdr))+hdr[12:]
print('udp', (hdr+udp).hex())
# TCP SYN with MSS option
opts=struct.pack('!BBH',2,4,1460)
tcp=struct.pack('!HHIIHHHH',49152,80,0x01020304,0,(6<<12)|0x002,65535,0,0)+opts
ph=src+dst+struct.pack('!BBH',0,6,len(tcp))
c=csum(ph+tcp); tcp=tcp[:16]+struct.pack('!H',c)+tcp[18:]
hdr=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(tcp),1,0,64,6,0,src,dst)
hdr=hdr[:10]+struct.pack('!H',csum(hdr))+hdr[12:]
print('tcp', (hdr+tcp).hex())
# ICMP echo
icmp=struct.pack('!BBHHH',8,0,0,0x4242,7)+b'abc'
icmp=icmp[:2]+struct.pack('!H',csum(icmp))+icmp[4:]
hdr=struct.pack('!BBHHHBBH4s4s',0x45,0,20+len(icmp),0,0,64,1,0,src,dst)
hdr=hdr[:10]+struct.pack('!H',csum(hdr))+hdr[12:]
print('icmp', (hdr+icmp).hex())
print('rfc1071', hex(csum(bytes.fromhex('0001f203f4f5f6f7'))))
import ipaddress
src=ipaddress.IPv6Address('2001:db8::1').packed
dst=ipaddress.IPv6Address('2001:db8::2').packed
def ph(l,nh): return src+dst+struct.pack('!I3xB',l,nh)
# ICMPv6 echo request id 0x1234 seq 1 "ping"
icmp=struct.pack('!BBHHH',128,0,0,0x1234,1)+b'ping'
icmp=icmp[:2]+struct.pack('!H',csum(ph(len(icmp),58)+icmp))+icmp[4:]
hdr=struct.pack('!IHBB',(6<<28)|(0x12<<20)|0xabcde,len(icmp),58,64)+src+dst
print('icmp6', (hdr+icmp).hex())
# UDP with hop-by-hop (8 bytes, PadN), dest options (16 bytes), fragment header (offset 0, M=1, id 0xdeadbeef), then UDP
udp=struct.pack('!HHHH',5000,53,8+3,0)+b'xyz'
c=csum(ph(len(udp),17)+udp) or 0xffff
udp=udp[:6]+struct.pack('!H',c)+udp[8:]
hbh=struct.pack('!BB',60,0)+bytes([1,4,0,0,0,0])
dopt=struct.pack('!BB',44,1)+bytes([1,12])+bytes(12)
frag=struct.pack('!BBHI',17,0,(0<<3)|1,0xdeadbeef)
pl=hbh+dopt+frag+udp
hdr=struct.pack('!IHBB',(6<<28),len(pl),0,64)+src+dst
print('udp6chain', (hdr+pl).hex(), 'udpoff', 40+len(hbh)+len(dopt)+len(frag))
