"""Batch file endpoints: imports and exports."""
import csv
import io

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from scp_core.models import Vertical
from scp_core.errors import ApiError

from .. import batch, exports
from ..models import ExportJob, ImportJob
from ..serializers import (
    ExportJobSerializer,
    ExportRequestSerializer,
    ImportJobSerializer,
    ImportUploadSerializer,
    ProblemSerializer,
)
from .base import ERRORS, GovernedAPIView


def _import_json(request, job):
    return {
        "id": str(job.id),
        "status": job.status,
        "vertical": job.vertical.code,
        "record_type": job.record_type,
        "format": job.file_format,
        "rows_total": job.rows_total,
        "rows_done": job.rows_done,
        "rows_failed": job.rows_failed,
        "error": job.error,
        **batch.progress(job),
        "errors_url": request.build_absolute_uri(f"/api/v1/imports/{job.id}/errors/"),
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


class ImportCreateView(GovernedAPIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        operation_id="imports_create",
        request={"multipart/form-data": ImportUploadSerializer},
        responses={202: ImportJobSerializer, 415: OpenApiResponse(ProblemSerializer), **ERRORS},
    )
    def post(self, request):
        """Upload a CSV (header `person_id` + the record type's fields) or NDJSON file."""
        body = ImportUploadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        code = self._vertical(body.validated_data["vertical"], self.principal.write_scope)
        job = batch.import_create(
            integration=self.principal.integration, vertical=Vertical.objects.get(code=code),
            record_type=body.validated_data["record_type"], upload=body.validated_data["file"],
        )
        self.audit_details(import_job=str(job.id), rows_total=job.rows_total)
        return Response(_import_json(request, job), status=202)


class _ImportJobView(GovernedAPIView):
    def job(self, job_id):
        """Only the integration's own jobs (another's id is not found), in a vertical its token
        and write scope still allow."""
        job = self.in_scope_or_404(ImportJob.objects.select_related("vertical").filter(integration=self.principal.integration), job_id)
        self._vertical(job.vertical.code, self.principal.write_scope)
        return job


class ImportDetailView(_ImportJobView):
    @extend_schema(operation_id="imports_retrieve", responses={200: ImportJobSerializer, **ERRORS})
    def get(self, request, job_id):
        """The job's status and progress (rows done, rows/s, ETA)."""
        return Response(_import_json(request, self.job(job_id)))


class ImportResumeView(_ImportJobView):
    @extend_schema(operation_id="imports_resume", request=None, responses={202: ImportJobSerializer, 409: OpenApiResponse(ProblemSerializer), **ERRORS})
    def post(self, request, job_id):
        """Resume a failed or abandoned job from its checkpoint."""
        job = self.job(job_id)
        batch.import_resume(job)
        job.refresh_from_db()
        return Response(_import_json(request, job), status=202)


class ImportErrorsView(_ImportJobView):
    @extend_schema(operation_id="imports_errors", responses={(200, "text/csv"): OpenApiTypes.STR, **ERRORS})
    def get(self, request, job_id):
        """The per-row error report as CSV: line, field, message."""
        job = self.job(job_id)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["line", "field", "message"])
        for row in job.row_errors.order_by("line").iterator():
            for problem in row.errors:
                writer.writerow([row.line, problem.get("field") or "", problem.get("message", "")])
        return HttpResponse(out.getvalue(), content_type="text/csv")


def _export_json(request, job):
    ready = job.status == "completed" and bool(job.file_path)
    return {
        "id": str(job.id), "status": job.status, "vertical": job.vertical.code, "format": job.file_format,
        "rows_written": job.rows_written, "rows_excluded": job.rows_excluded, "error": job.error,
        "download_url": request.build_absolute_uri(f"/api/v1/exports/{job.id}/download/") if ready else None,
        "expires_at": job.expires_at,
    }


class ExportCreateView(GovernedAPIView):
    @extend_schema(operation_id="exports_create", request=ExportRequestSerializer, responses={202: ExportJobSerializer, **ERRORS})
    def post(self, request):
        """Export the integration's consented, minimized data of a vertical as NDJSON or CSV."""
        body = ExportRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        code = self._vertical(body.validated_data["vertical"], self.principal.read_fields)
        job = exports.export_create(integration=self.principal.integration, vertical=Vertical.objects.get(code=code),
                                    file_format=body.validated_data["format"])
        self.audit_details(export_job=str(job.id))
        return Response(_export_json(request, job), status=202)


class _ExportJobView(GovernedAPIView):
    def job(self, job_id):
        """Only the integration's own jobs, in a vertical its token and read scope still allow."""
        job = self.in_scope_or_404(ExportJob.objects.select_related("vertical").filter(integration=self.principal.integration), job_id)
        self._vertical(job.vertical.code, self.principal.read_fields)
        return job


class ExportDetailView(_ExportJobView):
    @extend_schema(operation_id="exports_retrieve", responses={200: ExportJobSerializer, **ERRORS})
    def get(self, request, job_id):
        return Response(_export_json(request, self.job(job_id)))


class ExportDownloadView(_ExportJobView):
    @extend_schema(operation_id="exports_download", responses={(200, "application/x-ndjson"): OpenApiTypes.BINARY,
                                                               409: OpenApiResponse(ProblemSerializer), **ERRORS})
    def get(self, request, job_id):
        """The export file, streamed, once the job is completed (until it expires)."""
        job = self.job(job_id)
        if job.status != "completed":
            raise ApiError(409, "invalid_transition", f"The export is {job.status}, not completed yet.")
        if not job.file_path:
            raise ApiError(404, "not_found", "The export has expired.")
        rows, excluded, releases = exports.stream_download(job)
        self.disclose(*releases)
        self.audit_details(export_job=str(job.id), data_categories=sorted(self.principal.read_fields.get(job.vertical.code, {})),
                           consent={"checked": "at download", "excluded_at_download": excluded})
        content_type = "text/csv" if job.file_format == "csv" else "application/x-ndjson"
        response = StreamingHttpResponse(rows, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="export-{job.id}.{job.file_format}"'
        return response
