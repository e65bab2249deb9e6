"""Shapes of the governance API; validation only, writes go through lifecycle.services."""
from rest_framework import serializers

from registry.models import DataContractVersion, Integration, IntegrationTemplate, Partner, ReviewDecision
from scp_core.models import Tenant, Vertical


class IntegrationSerializer(serializers.ModelSerializer):
    tenant = serializers.SlugRelatedField(slug_field="code", read_only=True)
    partner = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    partner_name = serializers.CharField(read_only=True)
    partner_type = serializers.CharField(source="partner.partner_type", read_only=True)
    verticals = serializers.SerializerMethodField()
    data_contract_ref = serializers.CharField(read_only=True)
    template = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    rate_limit_policy_id = serializers.CharField(source="rate_limit_policy.name", read_only=True, default=None)
    other_tenants = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    newer_template = serializers.SerializerMethodField()

    class Meta:
        model = Integration
        fields = [
            "integration_id", "tenant", "integration_name", "partner", "partner_name", "partner_type",
            "status", "verticals", "purpose", "purpose_code", "embargo_until", "active_from", "active_until", "agreement_until", "approved_agreement", "data_contract_ref",
            "template", "newer_template", "other_tenants", "auth_client_id", "rate_limit_policy_id", "replacement", "created_by", "created_at",
        ]
        read_only_fields = fields

    def get_verticals(self, obj) -> list[str]:
        return obj.vertical_codes()

    def get_template(self, obj) -> str | None:
        return f"{obj.template.slug}@v{obj.template.version}" if obj.template else None

    def get_newer_template(self, obj) -> str | None:
        newer = obj.newer_template
        return f"{newer.slug}@v{newer.version}" if newer else None


class IntegrationCreateSerializer(serializers.Serializer):
    template = serializers.SlugField(required=False, help_text="registry template slug (newest version is used)")
    data_contract = serializers.CharField(required=False, help_text="'<contract>@v<version>' when not from a template")
    tenant = serializers.SlugRelatedField(slug_field="code", queryset=Tenant.objects.all())
    partner = serializers.SlugRelatedField(slug_field="slug", queryset=Partner.objects.all())
    integration_name = serializers.CharField(max_length=200)
    verticals = serializers.SlugRelatedField(slug_field="code", queryset=Vertical.objects.all(), many=True)
    purpose = serializers.CharField(required=False, allow_blank=True)
    purpose_code = serializers.SlugField(required=False, help_text="one of the tenant's purposes (a template proposes one)")
    active_from = serializers.DateTimeField(required=False)
    active_until = serializers.DateTimeField(required=False, allow_null=True)
    other_tenants = serializers.SlugRelatedField(
        slug_field="code", queryset=Tenant.objects.all(), many=True, required=False, default=list
    )

    def validate_template(self, slug):
        template = IntegrationTemplate.objects.filter(slug=slug).order_by("-version").first()
        if template is None:
            raise serializers.ValidationError(f"unknown template {slug!r}")
        return template

    def validate_data_contract(self, ref):
        slug, _, version = ref.partition("@v")
        contract = DataContractVersion.objects.filter(
            contract__slug=slug, version=int(version) if version.isdigit() else -1
        ).first()
        if contract is None:
            raise serializers.ValidationError(f"unknown data contract version {ref!r}")
        return contract

    def validate(self, attrs):
        if not attrs.get("template") and not attrs.get("data_contract"):
            raise serializers.ValidationError({"template": ["give a template or a data_contract"]})
        if attrs.get("active_until") and attrs.get("active_from") and attrs["active_until"] <= attrs["active_from"]:
            raise serializers.ValidationError({"active_until": ["must be after active_from"]})
        return attrs


class ReviewSerializer(serializers.Serializer):
    vertical = serializers.SlugRelatedField(slug_field="code", queryset=Vertical.objects.all())
    decision = serializers.ChoiceField(choices=ReviewDecision.choices)
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    approved_fields = serializers.ListField(child=serializers.CharField(), required=False, default=list)


class ApproveSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    cross_tenant_grant = serializers.BooleanField(required=False, default=False)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class EmbargoSerializer(serializers.Serializer):
    until = serializers.DateTimeField(allow_null=True, help_text="release date; null lifts the embargo")
    reason = serializers.CharField()


class DeprecateSerializer(ReasonSerializer):
    replacement = serializers.PrimaryKeyRelatedField(queryset=Integration.objects.all())


class ConsentChangeSerializer(serializers.Serializer):
    person_id = serializers.UUIDField()
    vertical = serializers.SlugRelatedField(slug_field="code", queryset=Vertical.objects.all())
    status = serializers.ChoiceField(choices=["granted", "withdrawn"])
    effective_at = serializers.DateTimeField(required=False)
    purposes = serializers.ListField(child=serializers.SlugField(), required=False, allow_empty=False,
                                     help_text="the purposes the consent covers; absent: every purpose of the vertical")


class DisclosureSerializer(serializers.Serializer):
    disclosed_at = serializers.DateTimeField()
    integration_id = serializers.UUIDField()
    integration_name = serializers.CharField()
    partner = serializers.CharField()
    partner_name = serializers.CharField()
    vertical = serializers.CharField()
    purpose_code = serializers.CharField()
    channel = serializers.CharField()
    fields = serializers.DictField(child=serializers.CharField(), help_text="{field: masking rule}")
    contract_version = serializers.CharField()
    audit_record_id = serializers.IntegerField()
    embargoed_until = serializers.DateTimeField(allow_null=True, help_text="set only for the auditor, during an embargo")


class DisclosurePageSerializer(serializers.Serializer):
    results = DisclosureSerializer(many=True)
    withheld = serializers.IntegerField(help_text="disclosures under embargo, left out")
    next = serializers.URLField(allow_null=True)
