"""A local fake of the AEAT's VERI*FACTU service (RegFactuSistemaFacturacion), over real HTTP or HTTPS with client
certificates, speaking SOAP 1.1 as the real one does (names: payments/statements/verifactu/wsdl/).

Like the AEAT it keeps every record it accepted, keyed by issuer, number, date and operation, and answers a record it
already holds with error 3000 ("Registro de facturación duplicado") and the RegistroDuplicado block. Per test:
``decide`` maps an invoice number to the verdict on it, ``wait`` is the TiempoEsperaEnvio it answers, ``down``
makes it answer 503 (or a SOAP fault) without keeping anything, and ``requests`` lists what each request carried.
"""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.etree import ElementTree as ET

from payments.statements.verifactu.export import SF, SFLR

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
SFR = "https://www2.agenciatributaria.gob.es/static_files/common/internet/dep/aplicaciones/es/aeat/tike/cont/ws/RespuestaSuministro.xsd"
PATH = "/wlpl/TIKE-CONT/ws/SistemaFacturacion/VerifactuSOAP"


@dataclass
class State:
    wait: int = 60
    down: str = ""  # "", "503" or "fault"
    delay: float = 0.0  # seconds before answering (two workers overlap in the concurrency test)
    decide: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # number -> (EstadoRegistro, code, text)
    held: dict[tuple[str, str, str, str], str] = field(default_factory=dict)  # key -> its request id
    requests: list[list[tuple[str, str, str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[tuple[str, str, str, str]]:
        """Every record of every answered request, in order (a record sent twice appears twice)."""
        return [key for request in self.requests for key in request]


class FakeAeat:
    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.state = State()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.server_cert, tls.server_key)
            context.load_verify_locations(tls.ca)
            context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no conversation
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{self.scheme}://{host}:{port}{PATH}"

    def stop(self) -> None:
        """Down for good: the port refuses connections from now on."""
        self.server.shutdown()
        self.server.server_close()


def _handler(state: State):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet in test output
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if state.down == "503":
                self._reply(503, b"<html><body>Servicio no disponible</body></html>", "text/html")
                return
            if state.down == "fault":
                self._reply(500, _fault("Codigo[4102].El XML no cumple el esquema."))
                return
            if state.delay:
                time.sleep(state.delay)
            envelope = ET.fromstring(body)  # noqa: S314 (the request of our own sender, in a test)
            request = envelope.find(f"{{{SOAP}}}Body/{{{SFLR}}}RegFactuSistemaFacturacion")
            with state.lock:
                answer = _answer(state, request)
            self._reply(200, answer)

        def _reply(self, status: int, body: bytes, kind: str = "text/xml; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _identity(registro: ET.Element) -> tuple[str, str, str, str]:
    alta = registro.find(f"{{{SF}}}RegistroAlta")
    if alta is not None:
        ident = alta.find(f"{{{SF}}}IDFactura")
        names, operation = ("IDEmisorFactura", "NumSerieFactura", "FechaExpedicionFactura"), "Alta"
    else:
        ident = registro.find(f"{{{SF}}}RegistroAnulacion/{{{SF}}}IDFactura")
        names = ("IDEmisorFacturaAnulada", "NumSerieFacturaAnulada", "FechaExpedicionFacturaAnulada")
        operation = "Anulacion"
    issuer, number, day = (ident.findtext(f"{{{SF}}}{name}") for name in names)
    return issuer, number, day, operation


def _answer(state: State, request: ET.Element) -> bytes:
    ET.register_namespace("env", SOAP)
    ET.register_namespace("tikR", SFR)
    ET.register_namespace("tik", SF)
    keys = [_identity(registro) for registro in request.findall(f"{{{SFLR}}}RegistroFactura")]
    state.requests.append(keys)
    request_id = f"{len(state.requests):020d}"
    envelope = ET.Element(f"{{{SOAP}}}Envelope")
    answer = ET.SubElement(ET.SubElement(envelope, f"{{{SOAP}}}Body"), f"{{{SFR}}}RespuestaRegFactuSistemaFacturacion")
    csv = ET.SubElement(answer, f"{{{SFR}}}CSV")
    presentation = ET.SubElement(answer, f"{{{SFR}}}DatosPresentacion")
    ET.SubElement(presentation, f"{{{SF}}}NIFPresentador").text = keys[0][0] if keys else ""
    ET.SubElement(presentation, f"{{{SF}}}TimestampPresentacion").text = "2026-11-02T10:00:05+01:00"
    header = ET.SubElement(ET.SubElement(answer, f"{{{SFR}}}Cabecera"), f"{{{SF}}}ObligadoEmision")
    ET.SubElement(header, f"{{{SF}}}NombreRazon").text = "x"
    ET.SubElement(header, f"{{{SF}}}NIF").text = keys[0][0] if keys else ""
    ET.SubElement(answer, f"{{{SFR}}}TiempoEsperaEnvio").text = str(state.wait)
    status = ET.SubElement(answer, f"{{{SFR}}}EstadoEnvio")
    verdicts = []
    for key in keys:
        line = ET.SubElement(answer, f"{{{SFR}}}RespuestaLinea")
        ident = ET.SubElement(line, f"{{{SFR}}}IDFactura")
        for name, value in zip(("IDEmisorFactura", "NumSerieFactura", "FechaExpedicionFactura"), key[:3], strict=True):
            ET.SubElement(ident, f"{{{SF}}}{name}").text = value
        ET.SubElement(ET.SubElement(line, f"{{{SFR}}}Operacion"), f"{{{SF}}}TipoOperacion").text = key[3]
        if key in state.held:
            verdict, code, text = "Incorrecto", "3000", "Registro de facturación duplicado."
        else:
            verdict, code, text = state.decide.get(key[1], ("Correcto", "", ""))
        ET.SubElement(line, f"{{{SFR}}}EstadoRegistro").text = verdict
        if code:
            ET.SubElement(line, f"{{{SFR}}}CodigoErrorRegistro").text = code
            ET.SubElement(line, f"{{{SFR}}}DescripcionErrorRegistro").text = text
        if code == "3000":
            duplicate = ET.SubElement(line, f"{{{SFR}}}RegistroDuplicado")
            ET.SubElement(duplicate, f"{{{SF}}}IdPeticionRegistroDuplicado").text = state.held[key]
            ET.SubElement(duplicate, f"{{{SF}}}EstadoRegistroDuplicado").text = "Correcta"
        elif verdict != "Incorrecto":
            state.held[key] = request_id
        verdicts.append(verdict)
    if all(verdict == "Correcto" for verdict in verdicts):
        status.text = "Correcto"
    elif all(verdict == "Incorrecto" for verdict in verdicts):
        status.text = "Incorrecto"
    else:
        status.text = "ParcialmenteCorrecto"
    csv.text = f"A-FAKECSV{len(state.requests):06d}" if status.text != "Incorrecto" else ""
    if not csv.text:
        answer.remove(csv)
        answer.remove(presentation)
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(envelope)


def _fault(message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{SOAP}"><env:Body><env:Fault>'
        f"<faultcode>env:Client</faultcode><faultstring>{message}</faultstring>"
        "</env:Fault></env:Body></env:Envelope>"
    ).encode()


@dataclass
class TlsFiles:
    ca: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_tls(folder: Path) -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (openssl, EC P-256 keys)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Fake AEAT CA")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=EnergyPay Demo Utility/serialNumber=B12345674")):
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        )  # fmt: skip
    return TlsFiles(
        ca=str(folder / "ca.pem"),
        server_cert=str(folder / "server.pem"),
        server_key=str(folder / "server.key"),
        client_cert=str(folder / "client.pem"),
        client_key=str(folder / "client.key"),
    )
