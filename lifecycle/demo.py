"""The demo data of the contract: reference data, demo staff users and synthetic persons."""
import datetime
import random
import uuid

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from registry.models import DataContract, DataContractVersion, IntegrationTemplate, Partner, PartnerType, RateLimitPolicy
from scp_core.models import Consent, ConsentStatus, Person, Purpose, Sex, Tenant, Vertical
from scp_core.statistics import analyze

from . import demo_bulk
from .models import RoleAssignment

TENANTS = {"ke": "Kenya", "ug": "Uganda"}
VERTICALS = {"health": "Health", "education": "Education", "social_protection": "Social protection"}
DISTRICTS = {
    "ke": ["Nairobi", "Mombasa", "Kisumu", "Nakuru", "Eldoret", "Garissa", "Kakamega", "Nyeri"],
    "ug": ["Kampala", "Gulu", "Mbarara", "Jinja", "Lira", "Arua", "Mbale", "Masaka"],
}
GIVEN = ["Amina", "Brian", "Grace", "David", "Faith", "Joseph", "Mercy", "Peter", "Esther", "Samuel",
         "Ruth", "Daniel", "Joy", "Moses", "Sarah", "Isaac", "Irene", "John", "Agnes", "Paul"]
FAMILY = ["Otieno", "Wanjiru", "Kamau", "Mutua", "Achieng", "Okello", "Nakato", "Mugisha", "Atim",
          "Kiprop", "Njoroge", "Auma", "Ssemakula", "Namubiru", "Onyango", "Chebet", "Byaruhanga", "Akello"]

# Demo staff users (as in the dev realm) and their roles: (role, tenant, vertical, partner).
STAFF_USERS = {
    "root": ("root", None, None, None),
    "umbrella": ("umbrella_authority", None, None, None),
    "auditor": ("auditor", None, None, None),
    "ke-admin": ("tenant_admin", "ke", None, None),
    "ke-health-owner": ("vertical_owner", "ke", "health", None),
    "ke-education-owner": ("vertical_owner", "ke", "education", None),
    "ug-admin": ("tenant_admin", "ug", None, None),
    "ug-health-owner": ("vertical_owner", "ug", "health", None),
    "partner-user": ("partner_user", None, None, "acme-health"),
}

IMMUNIZATION_SCHEMA = {
    "type": "object",
    "properties": {
        "vaccine": {"type": "string", "minLength": 1},
        "dose": {"type": "integer", "minimum": 1},
        "date": {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
    },
    "required": ["vaccine", "dose", "date"],
    "additionalProperties": False,
}

HEALTH_READ_FIELDS = {
    "id": "plain",
    "given_name": "plain",
    "family_name": "plain",
    "national_id": "last:4",
    "birth_date": "year",
    "sex": "plain",
    "district": "plain",
}

# Each tenant's purpose vocabulary (contract): code -> (name, investigation).
PURPOSES = {
    "treatment": ("Treatment and care", False),
    "public_health_reporting": ("Public-health reporting", False),
    "programme_eligibility": ("Programme eligibility", False),
    "research": ("Research", False),
    "investigation": ("Investigation", True),
}

# Per vertical and person: consent granted, never given, or withdrawn.
_CONSENT_MIX = (("granted", 0.6), ("never", 0.25), ("withdrawn", 0.15))


@transaction.atomic
def seed_reference_data(*, dev_passwords=False):
    """Tenants, verticals, partner, contract, template and demo staff users (idempotent)."""
    for code, name in TENANTS.items():
        tenant, _ = Tenant.objects.get_or_create(code=code, defaults={"name": name})
        for purpose, (label, investigation) in PURPOSES.items():
            Purpose.objects.get_or_create(tenant=tenant, code=purpose,
                                          defaults={"name": label, "investigation": investigation})
    for code, name in VERTICALS.items():
        Vertical.objects.get_or_create(code=code, defaults={"name": name})
    Partner.objects.get_or_create(slug="acme-health", defaults={
        "name": "ACME Health", "partner_type": PartnerType.NGO, "contact_email": "integrations@acme-health.example"})
    RateLimitPolicy.objects.get_or_create(name="standard", defaults={"requests_per_minute": 600, "burst": 100})
    contract, _ = DataContract.objects.get_or_create(
        slug="health-records-basic", defaults={"name": "Basic health records"}
    )
    version, _ = DataContractVersion.objects.get_or_create(
        contract=contract,
        version=1,
        defaults={
            "read_fields": {"health": HEALTH_READ_FIELDS},
            "write_schemas": {"health": {"immunization": IMMUNIZATION_SCHEMA}},
            # An integration reads back the immunizations it wrote itself, not other writers'.
            "read_records": {"health": {"immunization": {
                "fields": {"vaccine": "plain", "dose": "plain", "date": "plain"}, "other_writers": False}}},
            "data_categories": ["identity", "demographics", "immunization"],
        },
    )
    template, created = IntegrationTemplate.objects.get_or_create(
        slug="health-records-basic",
        version=1,
        defaults={
            "name": "Health records (basic)",
            "purpose": "Read basic demographics of consenting persons and report immunizations.",
            "purpose_code": "public_health_reporting",
            "data_contract": version,
            "vetted_at": timezone.now(),
        },
    )
    if created:
        template.verticals.set(Vertical.objects.filter(code="health"))
    _seed_staff_users(dev_passwords=dev_passwords)


def _seed_staff_users(*, dev_passwords):
    User = get_user_model()
    for username, (role, tenant, vertical, partner) in STAFF_USERS.items():
        user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@scp.example"})
        RoleAssignment.objects.get_or_create(
            user=user,
            role=role,
            tenant=Tenant.objects.get(code=tenant) if tenant else None,
            vertical=Vertical.objects.get(code=vertical) if vertical else None,
            partner=Partner.objects.get(slug=partner) if partner else None,
        )
        if created:
            user.is_staff = True
            user.is_superuser = username == "root"
            # Staff sign in through Keycloak; a local password exists only on the embedded
            # default (dev), equal to the username like the dev realm's.
            if dev_passwords:
                user.set_password(username)
            else:
                user.set_unusable_password()
            user.save()


def seed_persons(count, *, seed=20261129, batch_size=None, tenant_codes=None, consent_mix=None):
    """Create `count` synthetic persons split across the tenants, with a consent mix per vertical.

    On PostgreSQL the rows are generated by the database itself (lifecycle.demo_bulk), a million
    per statement; elsewhere (the embedded SQLite default) they are made here and bulk-inserted.
    Persons are numbered on from those that exist, so seeding again adds new ones.
    """
    tenants = list(Tenant.objects.filter(code__in=tenant_codes or TENANTS).order_by("code"))
    verticals = list(Vertical.objects.filter(code__in=VERTICALS).order_by("code"))
    now = timezone.now()
    earlier = now - datetime.timedelta(days=30)
    start = Person.objects.count()
    mix = consent_mix or _CONSENT_MIX
    if connection.vendor == "postgresql":
        _generate_in_database(count, start, seed, tenants, verticals, mix, now, earlier, batch_size or 1_000_000)
    else:
        _generate_here(count, start, seed, tenants, verticals, mix, now, earlier, batch_size or 20_000)
    analyze(Person, Consent)
    return count


def _generate_in_database(count, start, seed, tenants, verticals, mix, now, earlier, batch_size):
    for first in range(start, start + count, batch_size):
        last = min(first + batch_size, start + count) - 1
        with transaction.atomic():
            for index, tenant in enumerate(tenants):
                # person i belongs to tenants[i % len(tenants)], as in _generate_here
                offset = (index - first) % len(tenants)
                demo_bulk.insert_persons(
                    seed=seed, first=first + offset, last=last, step=len(tenants), tenant_id=tenant.pk,
                    given=GIVEN, family=FAMILY, sexes=[sex.value for sex in _SEXES], districts=DISTRICTS[tenant.code],
                    phone_prefix=_PHONE_PREFIX[tenant.code], now=now)
            for vertical in verticals:
                demo_bulk.insert_consents(seed=seed, first=first, last=last, vertical_id=vertical.pk,
                                          vertical_code=vertical.code, mix=mix, at=earlier)


def _generate_here(count, start, seed, tenants, verticals, mix, now, earlier, batch_size):
    rng = random.Random(f"{seed}:{start}")  # reproducible, yet new ids when seeding again
    kinds, weights = [k for k, _ in mix], [w for _, w in mix]
    created = 0
    while created < count:
        n = min(batch_size, count - created)
        persons, consents = [], []
        for i in range(start + created, start + created + n):
            tenant = tenants[i % len(tenants)]
            person_id = uuid.UUID(int=rng.getrandbits(128), version=4)
            persons.append(Person(
                id=person_id, tenant_id=tenant.pk, given_name=rng.choice(GIVEN), family_name=rng.choice(FAMILY),
                national_id=f"{i:09d}",
                birth_date=datetime.date(1940, 1, 1) + datetime.timedelta(days=rng.randrange(0, 30000)),
                sex=rng.choice(_SEXES), phone=f"{_PHONE_PREFIX[tenant.code]}{rng.randrange(10**8):08d}",
                district=rng.choice(DISTRICTS[tenant.code]), created_at=now, updated_at=now,
            ))
            for vertical, kind in zip(verticals, rng.choices(kinds, weights=weights, k=len(verticals))):
                if kind == "granted":
                    consents.append(Consent(person_id=person_id, vertical_id=vertical.pk, status=ConsentStatus.GRANTED,
                                            prior_status="", effective_at=earlier, recorded_at=earlier))
                elif kind == "withdrawn":
                    consents.append(Consent(person_id=person_id, vertical_id=vertical.pk,
                                            status=ConsentStatus.WITHDRAWN, prior_status=ConsentStatus.GRANTED,
                                            effective_at=earlier, recorded_at=earlier))
        with transaction.atomic():
            Person.objects.bulk_create(persons)
            Consent.objects.bulk_create(consents)
        created += n


_SEXES = [Sex.FEMALE, Sex.MALE, Sex.FEMALE, Sex.MALE, Sex.OTHER]
_PHONE_PREFIX = {"ke": "+2547", "ug": "+2567"}
