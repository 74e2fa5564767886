"""HL7 v2 lab results (ORU^R01, v2.3 to 2.6) into the exchange's FHIR R4 index.

The path of one message::

    bytes (a file, an MLLP block)
      └─ framing.split_messages   one payload → messages (batches, BOM, MLLP bytes, CR/LF)
          └─ charset.decode       MSH-18 → text (UTF-8, GB18030, 8859/1 …), notes any fallback
              └─ message.parse    fields split lazily + escapes (escapes.py) + typed field access
                  └─ oru.map_oru  PID → Patient (patient.py), OBR → DiagnosticReport + Specimen,
                                  OBX → Observation (observation.py, units.py, timestamp.py),
                                  codes → LOINC via hie.terminology (coding.py);
                                  one adapters.base.Unit → ingest

Sources: ``drop_folder`` (a folder of files, one Batch per file, ``done/`` after commit;
``import_file`` for a one-off file) and ``mllp`` (an asyncio TCP listener, one ACK per message,
built by ``ack``). Mapping is pure: no I/O, no clock, no database. Every mapping failure is a
``message.MessageError`` (a ``BadMessage`` with the field at fault and the HL7 table 0357
condition), never another exception.
"""
